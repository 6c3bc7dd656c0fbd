package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/encoding/protojson"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// MaxResultBytes bounds a result file read back: a run with every request
// saved stays far below it.
const MaxResultBytes = 1 << 30

// MarshalResult encodes res as the result file's JSON: proto field names
// (snake_case), every field present, indented. protojson varies its
// whitespace on purpose; re-indenting makes the file stable, so two runs
// diff cleanly.
func MarshalResult(res *Result) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(res)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// WriteResultFile writes res to path through a temporary file, so a
// reader never sees half a result.
func WriteResultFile(path string, res *Result) error {
	b, err := MarshalResult(res)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	merr := tmp.Chmod(0o644) // a result is meant to be shared
	cerr := tmp.Close()
	if err := errors.Join(werr, merr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}

// UnmarshalResult decodes a result file. Fields it does not know (from a
// newer strata) are ignored; a newer schema version is an error.
func UnmarshalResult(b []byte) (*Result, error) {
	res := &stratav1.BenchResult{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, res); err != nil {
		return nil, fmt.Errorf("not a strata bench result: %w", err)
	}
	switch v := res.GetSchemaVersion(); {
	case v == 0:
		return nil, errors.New("not a strata bench result: no schema_version")
	case v > SchemaVersion:
		return nil, fmt.Errorf("result schema version %d is newer than this strata's (%d)", v, SchemaVersion)
	}
	return res, nil
}

// ReadResultFile reads a result file.
func ReadResultFile(path string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, MaxResultBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > MaxResultBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, MaxResultBytes>>20)
	}
	res, err := UnmarshalResult(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}
