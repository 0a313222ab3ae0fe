package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// encoding is how keys and values are written on the command line, in
// batch files and in the output.
type encoding int

const (
	encText encoding = iota
	encHex
	encBase64
)

// decode turns a command-line key or value into bytes. Errors are usage
// errors.
func (e encoding) decode(what, s string) ([]byte, error) {
	switch e {
	case encHex:
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, UsageErrorf("%s %q is not hex: %v", what, s, err)
		}
		return b, nil
	case encBase64:
		t := strings.TrimRight(s, "=")
		b, err := base64.RawStdEncoding.DecodeString(t)
		if err != nil {
			return nil, UsageErrorf("%s %q is not base64: %v", what, s, err)
		}
		return b, nil
	}
	return []byte(s), nil
}

// key decodes a key, refusing the empty key.
func (e encoding) key(s string) ([]byte, error) {
	if s == "" {
		return nil, UsageErrorf("empty key")
	}
	b, err := e.decode("key", s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, UsageErrorf("empty key")
	}
	return b, nil
}

// encode renders bytes in the hex or base64 encoding; in text mode it
// returns them as a string unchanged.
func (e encoding) encode(b []byte) string {
	switch e {
	case encHex:
		return hex.EncodeToString(b)
	case encBase64:
		return base64.StdEncoding.EncodeToString(b)
	}
	return string(b)
}

// display renders bytes for human output: hex or base64 when selected,
// otherwise the text itself when it is printable, or a Go-quoted string.
func (e encoding) display(b []byte) string {
	if e != encText {
		return e.encode(b)
	}
	if printable(b) {
		return string(b)
	}
	return strconv.Quote(string(b))
}

func printable(b []byte) bool {
	if len(b) == 0 || !utf8.Valid(b) {
		return false
	}
	if b[0] == '"' || b[0] == ' ' || b[len(b)-1] == ' ' {
		return false // would be ambiguous with the quoted form or trimmed
	}
	for _, r := range string(b) {
		if r == '\t' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// field is one member of an ordered JSON object.
type field struct {
	name  string
	value any
}

// object is a JSON object whose members keep their order.
type object []field

// MarshalJSON writes the members in order.
func (o object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(f.name)
		buf.Write(k)
		buf.WriteByte(':')
		v, err := json.Marshal(f.value)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.name, err)
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// bytesField returns the JSON member for bytes: name with the encoded
// bytes, or, in text mode for bytes that are not valid UTF-8, name_base64
// with their base64.
func (e encoding) bytesField(name string, b []byte) field {
	if e == encText && !utf8.Valid(b) {
		return field{name + "_base64", base64.StdEncoding.EncodeToString(b)}
	}
	return field{name, e.encode(b)}
}

// jsonBytes reads a key or value from a batch file member: name in the
// command's encoding, or name_base64 in base64. It reports whether either
// was present.
func (e encoding) jsonBytes(m map[string]json.RawMessage, name string) ([]byte, bool, error) {
	if _, both := m[name]; both {
		if _, ok := m[name+"_base64"]; ok {
			return nil, true, fmt.Errorf("give %q or %q, not both", name, name+"_base64")
		}
	}
	if raw, ok := m[name+"_base64"]; ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, true, fmt.Errorf("%s_base64: %w", name, err)
		}
		b, err := encBase64.decode(name, s)
		return b, true, err
	}
	raw, ok := m[name]
	if !ok {
		return nil, false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, true, fmt.Errorf("%s: want a string: %w", name, err)
	}
	b, err := e.decode(name, s)
	return b, true, err
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}
