package fsm

import (
	"errors"
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// CommandType is the first byte of every Raft log entry the brain writes.
// The numbers are part of the on-disk format: they are append-only, and a
// number is never reused for another message, even after its command is gone.
type CommandType byte

// The command types. Add new ones at the end with the next number.
const (
	RegisterNodeType          CommandType = 1
	HeartbeatBatchType        CommandType = 2
	MarkNodesDownType         CommandType = 3
	DrainNodeType             CommandType = 4
	UpsertDeploymentType      CommandType = 5
	DeleteDeploymentType      CommandType = 6
	ApplyPlanType             CommandType = 7
	SetBrainMemberType        CommandType = 8
	RemoveBrainMemberType     CommandType = 9
	RecordPlannerDecisionType CommandType = 10
)

// registry maps each command type to its message, in both directions.
var registry = map[CommandType]proto.Message{
	RegisterNodeType:          (*stratav1.RegisterNodeCommand)(nil),
	HeartbeatBatchType:        (*stratav1.HeartbeatBatchCommand)(nil),
	MarkNodesDownType:         (*stratav1.MarkNodesDownCommand)(nil),
	DrainNodeType:             (*stratav1.DrainNodeCommand)(nil),
	UpsertDeploymentType:      (*stratav1.UpsertDeploymentCommand)(nil),
	DeleteDeploymentType:      (*stratav1.DeleteDeploymentCommand)(nil),
	ApplyPlanType:             (*stratav1.ApplyPlanCommand)(nil),
	SetBrainMemberType:        (*stratav1.SetBrainMemberCommand)(nil),
	RemoveBrainMemberType:     (*stratav1.RemoveBrainMemberCommand)(nil),
	RecordPlannerDecisionType: (*stratav1.RecordPlannerDecisionCommand)(nil),
}

var typeOf = func() map[reflect.Type]CommandType {
	m := make(map[reflect.Type]CommandType, len(registry))
	for t, msg := range registry {
		m[reflect.TypeOf(msg)] = t
	}
	return m
}()

// String names the command for logs and metrics.
func (t CommandType) String() string {
	if msg, ok := registry[t]; ok {
		return string(msg.ProtoReflect().Descriptor().Name())
	}
	return fmt.Sprintf("unknown(%d)", byte(t))
}

// ErrUnknownCommand is returned for a log entry whose type byte this binary
// does not know (a newer leader during a rolling upgrade, or corruption).
var ErrUnknownCommand = errors.New("unknown command type")

// ErrMalformedCommand is returned for a log entry that does not decode.
var ErrMalformedCommand = errors.New("malformed command")

// Encode frames a command as [type byte][protobuf].
func Encode(cmd proto.Message) ([]byte, error) {
	t, ok := typeOf[reflect.TypeOf(cmd)]
	if !ok {
		return nil, fmt.Errorf("encode %T: %w", cmd, ErrUnknownCommand)
	}
	b := make([]byte, 1, 1+proto.Size(cmd))
	b[0] = byte(t)
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(b, cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return b, nil
}

// Decode parses a log entry written by Encode.
func Decode(b []byte) (CommandType, proto.Message, error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("empty entry: %w", ErrMalformedCommand)
	}
	t := CommandType(b[0])
	zero, ok := registry[t]
	if !ok {
		return t, nil, fmt.Errorf("type %d: %w", b[0], ErrUnknownCommand)
	}
	msg := zero.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b[1:], msg); err != nil {
		return t, nil, fmt.Errorf("%s: %w: %w", t, ErrMalformedCommand, err)
	}
	return t, msg, nil
}
