package command

import "testing"

func TestByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0}, {in: "4096", want: 4096}, {in: "64GiB", want: 64 << 30}, {in: "512mi", want: 512 << 20},
		{in: "2TB", want: 2e12}, {in: " 10 KiB ", want: 10 << 10}, {in: "3G", want: 3e9}, {in: "7B", want: 7},
		{in: "", bad: true}, {in: "-1", bad: true}, {in: "1.5GiB", bad: true}, {in: "10XB", bad: true},
		{in: "9999999999TiB", bad: true},
	} {
		var b byteSize
		err := b.Set(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && int64(b) != tt.want) {
			t.Errorf("Set(%q) = %d, %v; want %d, bad %v", tt.in, b, err, tt.want, tt.bad)
		}
	}
}
