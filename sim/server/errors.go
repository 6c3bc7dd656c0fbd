package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// apiError is an error with the HTTP status it is answered with. vLLM puts
// the integer status in "code" and a Python-style exception name in "type";
// the simulator does the same so that clients see what vLLM would send.
type apiError struct {
	status  int
	message string
	param   string
}

func (e *apiError) Error() string { return e.message }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, message: fmt.Sprintf(format, args...)}
}

func badParam(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, message: fmt.Sprintf(format, args...), param: param}
}

var errorTypes = map[int]string{
	http.StatusBadRequest:            "BadRequestError",
	http.StatusNotFound:              "NotFoundError",
	http.StatusMethodNotAllowed:      "MethodNotAllowed",
	http.StatusRequestEntityTooLarge: "BadRequestError",
	http.StatusUnsupportedMediaType:  "BadRequestError",
	http.StatusServiceUnavailable:    "ServiceUnavailableError",
	http.StatusBadGateway:            "BadGatewayError",
}

type errorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    int     `json:"code"`
}

type errorEnvelope struct {
	Error errorBody `json:"error"`
}

func envelope(err error) (int, errorEnvelope) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, message: err.Error()}
	}
	typ, ok := errorTypes[ae.status]
	if !ok {
		typ = "InternalServerError"
	}
	body := errorBody{Message: ae.message, Type: typ, Code: ae.status}
	if ae.param != "" {
		body.Param = &ae.param
	}
	return ae.status, errorEnvelope{Error: body}
}

func writeError(w http.ResponseWriter, err error) {
	status, env := envelope(err)
	writeJSON(w, status, env)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"encoding the response failed","type":"InternalServerError","param":null,"code":500}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decodeJSON reads one JSON value from a size-limited body and turns every
// way it can be wrong into a 4xx the client can act on.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &tooBig):
			return &apiError{status: http.StatusRequestEntityTooLarge, message: fmt.Sprintf("request body over the %d-byte limit", tooBig.Limit)}
		case errors.As(err, &typeErr):
			return badParam(typeErr.Field, "invalid type for %q: expected %s, got JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
		case errors.As(err, &syntaxErr):
			return badRequest("malformed JSON at byte %d: %v", syntaxErr.Offset, err)
		default:
			return badRequest("malformed JSON: %v", err)
		}
	}
	if dec.More() {
		return badRequest("malformed JSON: trailing data after the request object")
	}
	return nil
}
