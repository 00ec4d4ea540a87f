package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a configuration file, named by file, line and key.
type Error struct {
	File    string
	Line    int
	Key     string
	Problem string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Problem)
	return b.String()
}

// Path returns the file to read: flag when set, else $HARBORFLOW_CONFIG, else DefaultFile.
func Path(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv(EnvFile); env != "" {
		return env
	}
	return DefaultFile
}

// Load reads, expands, decodes and validates the file at path. Every problem found is returned, each as an
// *Error, joined.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// LoadKeepingUnset is Load for the operational commands (events, status, ...), which need only the nats
// section: a ${NAME} whose variable is not set stays as written instead of being an error, so an operator
// does not need the stages' secrets to look at the streams.
func LoadKeepingUnset(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	return Parse(path, data, func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		return "${" + name + "}", true
	})
}

// Parse is Load for data already read; file names it in errors and lookup resolves ${NAME}.
func Parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	l := &loader{file: file, lookup: lookup, lines: map[string]int{}, valueLines: map[int]string{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, l.yamlError(err)
	}
	cfg := Default()
	if doc.Kind == 0 || len(doc.Content) == 0 {
		// An empty file: every default.
		return &cfg, l.validate(&cfg)
	}
	l.walk(&doc, reflect.TypeOf(cfg), "")
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	if err := doc.Decode(&cfg); err != nil {
		return nil, l.yamlError(err)
	}
	for i := range cfg.Sources {
		cfg.Sources[i].setDefaults()
	}
	for i := range cfg.Rebuilds {
		cfg.Rebuilds[i].setDefaults(filepath.Dir(file))
	}
	return &cfg, l.validate(&cfg)
}

type loader struct {
	file       string
	lookup     func(string) (string, bool)
	lines      map[string]int // key path → line
	valueLines map[int]string // line of a scalar value → key path
	errs       []error
}

func (l *loader) fail(key, problem string) {
	l.errs = append(l.errs, &Error{File: l.file, Line: l.lines[key], Key: key, Problem: problem})
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// walk checks every key of n against the fields of t (strict: an unknown key is an error), records where each
// key is, and expands ${NAME} in string scalars.
func (l *loader) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			l.walk(c, t, path)
		}
		return
	case yaml.AliasNode:
		l.walk(n.Alias, t, path)
		return
	}
	if n.Tag == "!!null" {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			l.errs = append(l.errs, &Error{File: l.file, Line: n.Line, Key: path, Problem: "must be a mapping of keys to values"})
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			l.lines[key] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				l.errs = append(l.errs, &Error{File: l.file, Line: k.Line, Key: key, Problem: "unknown key" + suggest(k.Value, fields)})
				continue
			}
			l.walk(v, f.Type, key)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			l.errs = append(l.errs, &Error{File: l.file, Line: n.Line, Key: path, Problem: "must be a list"})
			return
		}
		for i, c := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			l.lines[key] = c.Line
			l.walk(c, t.Elem(), key)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			l.errs = append(l.errs, &Error{File: l.file, Line: n.Line, Key: path, Problem: "must be a mapping"})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := join(path, n.Content[i].Value)
			l.lines[key] = n.Content[i].Line
			l.walk(n.Content[i+1], t.Elem(), key)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			l.errs = append(l.errs, &Error{File: l.file, Line: n.Line, Key: path, Problem: "must be a single value"})
			return
		}
		l.valueLines[n.Line] = path
		if n.Tag == "!!str" {
			l.expand(n, path)
		}
	}
}

// expand replaces ${NAME} in a string value with the environment variable NAME. An unset variable is an error:
// an empty secret would silently open a door.
func (l *loader) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		v, ok := l.lookup(name)
		if !ok {
			l.errs = append(l.errs, &Error{File: l.file, Line: n.Line, Key: path, Problem: fmt.Sprintf("environment variable %s is not set", name)})
		}
		return v
	})
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlError turns yaml.v3's errors into *Error values naming the key where the line is known.
func (l *loader) yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &Error{File: l.file, Problem: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var errs []error
	for _, msg := range te.Errors {
		e := &Error{File: l.file, Problem: msg}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Problem = m[2]
			e.Key = l.valueLines[e.Line]
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
	}
	return fields
}

// suggest names the known key an unknown one most likely meant: one it starts, or one within two edits.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestDist := "", 3
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasPrefix(name, key) || strings.HasPrefix(key, name) {
			return fmt.Sprintf(" (did you mean %q?)", name)
		}
		if d := distance(key, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return " (known keys: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
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

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
