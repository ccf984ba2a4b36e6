package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/arkbox/arkbox/appliance/users"
)

// maxFileSize bounds the configuration file.
const maxFileSize = 4 << 20

// Load reads and validates the configuration file at path. Fields the file
// leaves out take their defaults (an omitted "shares" list is the default
// share; an empty one is no shares). Unknown fields, repeated fields and
// values of the wrong type are errors naming the field; so is every
// problem Validate finds (each a *FieldError). A missing file is an error
// that matches fs.ErrNotExist.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return Config{}, fmt.Errorf("config: %s: larger than %d bytes", path, maxFileSize)
	}
	c, err := Parse(data, filepath.Dir(path))
	if err != nil {
		var fe *FieldError
		if errs := unjoin(err); len(errs) > 0 && errors.As(errs[0], &fe) {
			for _, e := range errs {
				if errors.As(e, &fe) {
					fe.File = path
				}
			}
			return Config{}, err
		}
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Parse decodes and validates a configuration file's contents, as Load
// does; dir is the folder the file is in (what data_dir is relative to).
func Parse(data []byte, dir string) (Config, error) {
	if err := checkJSON(data, reflect.TypeFor[Config]()); err != nil {
		return Config{}, err
	}
	c := defaults()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("decode: %w", err) // checkJSON lets nothing through that fails here
	}
	switch {
	case c.DataDir == "":
		c.DataDir = filepath.Clean(dir)
	case !filepath.IsAbs(c.DataDir):
		c.DataDir = filepath.Join(dir, c.DataDir)
	default:
		c.DataDir = filepath.Clean(c.DataDir)
	}
	if c.Shares == nil {
		c.Shares = defaultShares()
	}
	if c.Pool.Disks == nil {
		c.Pool.Disks = defaultDisks()
	}
	c = normalized(c)
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// normalized returns c with empty lists instead of nil ones (written as []
// rather than null) and nil instead of empty for fields that are omitted
// when empty, copying what it changes.
func normalized(c Config) Config {
	if c.Users == nil {
		c.Users = []User{}
	}
	c.Users = slices.Clone(c.Users)
	for i := range c.Users {
		u := &c.Users[i]
		if len(u.AuthorizedKeys) == 0 {
			u.AuthorizedKeys = nil // omitted when written
		}
		if len(u.Grants) == 0 {
			u.Grants = nil
		}
	}
	if c.Shares != nil {
		c.Shares = slices.Clone(c.Shares)
		for i := range c.Shares {
			if c.Shares[i].Snapshots == nil {
				c.Shares[i].Snapshots = []SnapshotSchedule{}
			}
		}
	}
	return c
}

// Marshal encodes c as Save writes it: indented JSON ending in a newline.
func Marshal(c Config) ([]byte, error) {
	b, err := json.MarshalIndent(normalized(c), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return append(b, '\n'), nil
}

// Save validates c and writes it to path atomically (a temporary file in
// the same folder, synced, renamed over path, the folder synced), readable
// by the owner only: it holds password hashes. A DataDir equal to path's
// folder is written as "" so that the folder can move.
func Save(path string, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := write(path, c, true); err != nil {
		return fmt.Errorf("config: save %s: %w", path, err)
	}
	return nil
}

// Init writes the default configuration for path's folder to path, with
// an administrator "admin" whose password it generates (users.GeneratePassword),
// hashes with p (users.DefaultParams() in production) and returns, to be
// shown once. It fails, matching fs.ErrExist, if path exists.
func Init(path string, p users.Params) (Config, string, error) {
	return initWith(path, Default(filepath.Clean(filepath.Dir(path))), p)
}

// InitFrom is Init starting from a template instead of the defaults: the
// template is a configuration file's contents (fields it leaves out take
// their defaults; a relative data_dir is relative to path's folder), read
// as strictly as Load reads. An administrator "admin" with a generated
// password is added unless the template has a user of that name; the
// password is "" then. An appliance image carries such a template to
// preset what differs from the defaults (addresses, schedules, parity).
func InitFrom(path string, template []byte, p users.Params) (Config, string, error) {
	c, err := Parse(template, filepath.Clean(filepath.Dir(path)))
	if err != nil {
		return Config{}, "", fmt.Errorf("config: init %s: template: %w", path, err)
	}
	return initWith(path, c, p)
}

func initWith(path string, c Config, p users.Params) (Config, string, error) {
	pw := ""
	if _, ok := c.User("admin"); !ok {
		pw = users.GeneratePassword()
		hash, err := users.HashPasswordParams([]byte(pw), p)
		if err != nil {
			return Config{}, "", fmt.Errorf("config: init %s: %w", path, err)
		}
		c.Users = append(slices.Clone(c.Users), User{Name: "admin", PasswordHash: hash, Admin: true})
	}
	if err := write(path, c, false); err != nil {
		return Config{}, "", fmt.Errorf("config: init %s: %w", path, err)
	}
	return c, pw, nil
}

// write writes c to path through a temporary file, replacing path or, if
// replace is false, failing if it exists.
func write(path string, c Config, replace bool) error {
	dir := filepath.Dir(path)
	if sameDir(c.DataDir, dir) {
		c.DataDir = ""
	}
	data, err := Marshal(c)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a rename there is nothing left to remove
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
	case replace:
		err = os.Rename(tmp.Name(), path)
	default:
		err = os.Link(tmp.Name(), path) // fails if path exists
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

func sameDir(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkJSON walks the JSON document alongside type t and reports, with the
// path of the field, what encoding/json would silently accept or report
// without a path: unknown fields (json matches names ignoring case; this
// does not), fields given twice, values of the wrong type, numbers out of
// range, and data after the document.
func checkJSON(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := walker{dec: dec, data: data}
	if err := w.value(t, ""); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return w.syntax(errors.New("data after the configuration object"))
	}
	return nil
}

type walker struct {
	dec  *json.Decoder
	data []byte
}

// syntax returns err located at the decoder's position.
func (w *walker) syntax(err error) error {
	off := w.dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = errors.New("unexpected end of file")
	}
	line := 1 + bytes.Count(w.data[:min(off, int64(len(w.data)))], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(w.data[:min(off, int64(len(w.data)))], '\n'))
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

func (w *walker) field(path string, format string, args ...any) error {
	if path == "" {
		path = "(top level)"
	}
	return &FieldError{Field: path, Err: fmt.Errorf(format, args...)}
}

// value checks the next value against t (nil: anything).
func (w *walker) value(t reflect.Type, path string) error {
	tok, err := w.dec.Token()
	if err != nil {
		return w.syntax(err)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	want := func(what string) error {
		got := "null"
		switch v := tok.(type) {
		case json.Delim:
			got = map[json.Delim]string{'{': "an object", '[': "a list"}[v]
		case string:
			got = "a string"
		case json.Number:
			got = "a number"
		case bool:
			got = "true or false"
		}
		return w.field(path, "want %s, not %s", what, got)
	}
	if d, ok := tok.(json.Delim); ok {
		switch {
		case t == nil:
			return w.rest(d, path)
		case d == '{' && t.Kind() == reflect.Struct:
			return w.object(t, path)
		case d == '{' && t.Kind() == reflect.Map:
			return w.mapping(t, path)
		case d == '[' && t.Kind() == reflect.Slice:
			return w.list(t, path)
		}
		return want(kindName(t))
	}
	if t == nil {
		return nil
	}
	switch k := t.Kind(); {
	case tok == nil:
		if k == reflect.Slice || k == reflect.Map {
			return nil // null: the default
		}
		return want(kindName(t))
	case k == reflect.String:
		if _, ok := tok.(string); !ok {
			return want(kindName(t))
		}
	case k == reflect.Bool:
		if _, ok := tok.(bool); !ok {
			return want(kindName(t))
		}
	case k >= reflect.Int && k <= reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return want(kindName(t))
		}
		i, err := strconv.ParseInt(string(n), 10, t.Bits())
		if err != nil || reflect.Zero(t).OverflowInt(i) {
			return w.field(path, "%s: want a whole number within range", n)
		}
	case k == reflect.Float64 || k == reflect.Float32:
		n, ok := tok.(json.Number)
		if !ok {
			return want(kindName(t))
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			return w.field(path, "%s: out of range", n)
		}
	default:
		return want(kindName(t))
	}
	return nil
}

func kindName(t reflect.Type) string {
	switch k := t.Kind(); {
	case k == reflect.Struct, k == reflect.Map:
		return "an object"
	case k == reflect.Slice:
		return "a list"
	case k == reflect.String:
		return "a string"
	case k == reflect.Bool:
		return "true or false"
	case k >= reflect.Int && k <= reflect.Int64:
		return "a whole number"
	case k == reflect.Float32 || k == reflect.Float64:
		return "a number"
	}
	return t.String()
}

// fields returns the JSON names of t's fields, embedded structs flattened.
func fields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for n, ft := range fields(f.Type) {
				out[n] = ft
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (w *walker) object(t reflect.Type, path string) error {
	known := fields(t)
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return w.syntax(err)
		}
		key := tok.(string)
		fp := join(path, key)
		ft, ok := known[key]
		if !ok {
			return w.field(fp, "unknown field%s", suggest(key, known))
		}
		if seen[key] {
			return w.field(fp, "given twice")
		}
		seen[key] = true
		if err := w.value(ft, fp); err != nil {
			return err
		}
	}
	return w.end()
}

func (w *walker) mapping(t reflect.Type, path string) error {
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return w.syntax(err)
		}
		key := tok.(string)
		fp := path + "[" + strconv.Quote(key) + "]"
		if seen[key] {
			return w.field(fp, "given twice")
		}
		seen[key] = true
		if err := w.value(t.Elem(), fp); err != nil {
			return err
		}
	}
	return w.end()
}

func (w *walker) list(t reflect.Type, path string) error {
	for i := 0; w.dec.More(); i++ {
		if err := w.value(t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return w.end()
}

// rest skips the rest of an object or list whose opening d was read.
func (w *walker) rest(d json.Delim, path string) error {
	for w.dec.More() {
		if d == '{' {
			if _, err := w.dec.Token(); err != nil {
				return w.syntax(err)
			}
		}
		if err := w.value(nil, path); err != nil {
			return err
		}
	}
	return w.end()
}

func (w *walker) end() error {
	if _, err := w.dec.Token(); err != nil {
		return w.syntax(err)
	}
	return nil
}

// suggest returns " (did you mean x?)" for the known field closest to key
// (ignoring case and '-' for '_') if it is at most two edits away.
func suggest(key string, known map[string]reflect.Type) string {
	norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	best, bestDist := "", 3
	for _, k := range slices.Sorted(maps.Keys(known)) {
		if d := editDistance(norm, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
