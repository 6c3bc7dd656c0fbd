package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// apiError is an error answered to the client in OpenAI's envelope,
// {"error":{"message","type","param","code"}}, with its HTTP status.
type apiError struct {
	status  int
	typ     string // OpenAI's error type
	code    string // OpenAI's machine-readable code, "" for null
	param   string
	message string
	// retryAfter, when set, is sent as Retry-After (429, 503).
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.message }

// OpenAI's error types.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typeRateLimit      = "requests"
	typeServer         = "server_error"
	typeUnavailable    = "service_unavailable"
)

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, param: param, message: fmt.Sprintf(format, args...)}
}

func modelNotFound(model string) *apiError {
	return &apiError{status: http.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found", param: "model",
		message: fmt.Sprintf("The model %q does not exist or is not served here.", model)}
}

func noCapacity(format string, args ...any) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, typ: typeUnavailable, code: "no_capacity",
		message: fmt.Sprintf(format, args...), retryAfter: time.Second}
}

type errorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type errorEnvelope struct {
	Error errorBody `json:"error"`
}

func (e *apiError) envelope() errorEnvelope {
	body := errorBody{Message: e.message, Type: e.typ}
	if e.param != "" {
		body.Param = &e.param
	}
	if e.code != "" {
		body.Code = &e.code
	}
	return errorEnvelope{Error: body}
}

// asAPIError turns any error into what the client is told: an apiError as
// it is, anything else as a 500 that does not leak internals.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{status: http.StatusInternalServerError, typ: typeServer, message: "internal error"}
}

func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((ae.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, ae.status, ae.envelope())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"encoding the response failed","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// engineError normalises an engine's error answer to OpenAI's envelope.
// vLLM and llama.cpp put the integer status in "code" (vLLM also a Python
// exception name in "type"), TensorRT-LLM answers {"object":"error",…}
// with the fields at the top; OpenAI's "code" is a string or null. The
// status is kept; the message is the engine's.
func engineError(status int, body []byte) *apiError {
	var env struct {
		Error *struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Param   *string         `json:"param"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
	}
	ae := &apiError{status: status, typ: typeForStatus(status)}
	if err := json.Unmarshal(body, &env); err == nil {
		switch {
		case env.Error != nil:
			ae.message = env.Error.Message
			if env.Error.Param != nil {
				ae.param = *env.Error.Param
			}
			var code string
			if json.Unmarshal(env.Error.Code, &code) == nil {
				ae.code = code
			}
		case env.Message != "":
			ae.message = env.Message
			if env.Param != nil {
				ae.param = *env.Param
			}
		}
	}
	if ae.message == "" {
		ae.message = fmt.Sprintf("the engine answered %d %s", status, http.StatusText(status))
	}
	return ae
}

func typeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return typeAuthentication
	case status == http.StatusTooManyRequests:
		return typeRateLimit
	case status == http.StatusServiceUnavailable:
		return typeUnavailable
	case status >= 500:
		return typeServer
	}
	return typeInvalidRequest
}
