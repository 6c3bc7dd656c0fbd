package server

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// KVTransferConfig is vLLM's --kv-transfer-config. The simulator implements
// the NixlConnector handshake; other keys vLLM knows are accepted so that a
// command line written for vLLM runs unchanged.
type KVTransferConfig struct {
	KVConnector            string         `json:"kv_connector"`
	KVRole                 string         `json:"kv_role"`
	EngineID               string         `json:"engine_id"`
	KVBufferDevice         string         `json:"kv_buffer_device"`
	KVBufferSize           float64        `json:"kv_buffer_size"`
	KVRank                 *int           `json:"kv_rank"`
	KVParallelSize         int            `json:"kv_parallel_size"`
	KVIP                   string         `json:"kv_ip"`
	KVPort                 int            `json:"kv_port"`
	KVConnectorExtraConfig map[string]any `json:"kv_connector_extra_config"`
	KVConnectorModulePath  string         `json:"kv_connector_module_path"`
	KVLoadFailurePolicy    string         `json:"kv_load_failure_policy"`
}

// ParseKVTransferConfig parses and checks the flag's JSON.
func ParseKVTransferConfig(s string) (KVTransferConfig, error) {
	var c KVTransferConfig
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("--kv-transfer-config: %w", err)
	}
	if dec.More() {
		return c, fmt.Errorf("--kv-transfer-config: trailing data after the JSON object")
	}
	if c.KVConnector != "NixlConnector" {
		return c, fmt.Errorf("--kv-transfer-config: kv_connector %q: strata sim implements NixlConnector", c.KVConnector)
	}
	if _, err := c.Role(); err != nil {
		return c, err
	}
	return c, nil
}

// Role maps vLLM's kv_role to the simulator's role.
func (c KVTransferConfig) Role() (Role, error) {
	switch c.KVRole {
	case "kv_producer":
		return RolePrefill, nil
	case "kv_consumer":
		return RoleDecode, nil
	case "kv_both", "":
		return RoleBoth, nil
	}
	return "", fmt.Errorf("--kv-transfer-config: kv_role %q: want kv_producer, kv_consumer or kv_both", c.KVRole)
}
