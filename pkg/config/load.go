package config

import (
	"errors"
	"fmt"
	"github.com/harborflow/harborflow/pkg/event"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
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

// Load reads the file at path for a process that runs stages (names of StageNames): it expands ${NAME} in,
// and validates, only nats, log, ops and what those stages use (Stages), and the Config it returns holds
// nothing else — every other section is left at its default, so a process never holds a value it did not
// check. The file's structure (YAML, unknown keys, value types, refused sections) is checked whole.
//
// No stages (nil or empty) means every stage, as `harborflow run` runs by default: the strictest load. An
// unknown stage name is an error naming the known ones. Every problem in the file is returned, each as an
// *Error, joined.
func Load(path string, stages ...string) (*Config, error) {
	s, err := forStages(stages)
	if err != nil {
		return nil, err
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	cfg, _, err := parse(path, data, os.LookupEnv, s)
	return cfg, err
}

// LoadOps reads the file at path for the ops commands (events, status, history, ...), which only connect to
// NATS: it expands ${NAME} in, and validates, only nats and log, so an operator needs no stage's secrets. The
// Config holds nothing else (every other section is at its default).
func LoadOps(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	cfg, _, err := parse(path, data, os.LookupEnv, forOps())
	return cfg, err
}

// Check reads the file at path as `harborflow config check` does: every section is validated, whichever
// stage reads it. A ${NAME} whose variable is not set is not an error but returned as an Unset naming the
// stages that need it; its value stays as written and is not validated further. Any other problem is an error.
func Check(path string) (*Config, []Unset, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, nil, err
	}
	return parse(path, data, os.LookupEnv, scope{all: true})
}

// Parse is Load for data already read: file names it in errors (and its directory anchors relative paths),
// lookup resolves ${NAME}, stages are as for Load.
func Parse(file string, data []byte, lookup func(string) (string, bool), stages ...string) (*Config, error) {
	s, err := forStages(stages)
	if err != nil {
		return nil, err
	}
	cfg, _, err := parse(file, data, lookup, s)
	return cfg, err
}

// Unset is a ${NAME} in the file whose environment variable is not set.
type Unset struct {
	// Name is the variable.
	Name string
	// File, Line and Key are where it is used.
	File string
	Line int
	Key  string
	// Stages are the stages that read Key: every stage for nats, log and ops.
	Stages []string
}

// NeededBy reports whether one of names is a stage that needs the variable.
func (u Unset) NeededBy(names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return slices.Contains(u.Stages, n) })
}

// String says where the variable is used and who needs it.
func (u Unset) String() string {
	return (&Error{File: u.File, Line: u.Line, Key: u.Key, Problem: unsetProblem(u.Name, u.Stages)}).Error()
}

func unsetProblem(name string, stages []string) string {
	who := "needed by every process"
	switch {
	case len(stages) == 0:
		who = "read by no stage"
	case !slices.Equal(stages, StageNames()):
		who = "needed by the " + strings.Join(stages, ", the ")
		if stages[len(stages)-1] == event.StageRetention {
			who += " stage" // "the retention" alone reads as a noun of its own
		}
	}
	return fmt.Sprintf("environment variable %s is not set (%s)", name, who)
}

// readFile reads the config file, saying how to name one when there is none.
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		tried := path
		if abs, aerr := filepath.Abs(path); aerr == nil && abs != path {
			tried = fmt.Sprintf("%s (%s)", path, abs)
		}
		how := fmt.Sprintf("name one with --config FILE or $%s", EnvFile)
		switch {
		case path == DefaultFile:
			how = fmt.Sprintf("it is the default when neither --config nor $%s is set; %s", EnvFile, how)
		case path == os.Getenv(EnvFile):
			how = fmt.Sprintf("$%s names it", EnvFile)
		}
		return nil, &noFileError{msg: fmt.Sprintf("config file %s does not exist: %s (deploy/harborflow.yaml is a sample)", tried, how), err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	return data, nil
}

// noFileError is a config file that is not there; it unwraps to the *fs.PathError (fs.ErrNotExist).
type noFileError struct {
	msg string
	err error
}

func (e *noFileError) Error() string { return e.msg }
func (e *noFileError) Unwrap() error { return e.err }

// refused are keys the file may not set, with why: keys that are no longer read.
var refused = map[string]string{
	"http.shutdown_timeout": fmt.Sprintf("is no longer read: ops.shutdown_grace is how long running handlers get "+
		"to finish on SIGTERM, and the whole stop takes at most that plus %s", DrainTimeout),
}

// parse reads data for the scope s; in check mode (s.all), unset variables are returned, not errors.
func parse(file string, data []byte, lookup func(string) (string, bool), s scope) (*Config, []Unset, error) {
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, nil, fmt.Errorf("locating config file %s: %w", file, err)
	}
	l := &loader{file: file, lookup: lookup, scope: s, lines: map[string]int{}, valueLines: map[int]string{},
		kinds: map[string]string{}, unsetKeys: map[string]bool{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, l.yamlError(err)
	}
	cfg := Default()
	if doc.Kind != 0 && len(doc.Content) > 0 {
		l.walk(&doc, reflect.TypeOf(cfg), "")
		if len(l.errs) > 0 {
			return nil, nil, errors.Join(l.errs...)
		}
		if err := doc.Decode(&cfg); err != nil {
			return nil, nil, l.yamlError(err)
		}
	}
	for i := range cfg.Sources {
		cfg.Sources[i].setDefaults()
	}
	for i := range cfg.Rebuilds {
		cfg.Rebuilds[i].setDefaults()
	}
	for i := range cfg.Promotions {
		cfg.Promotions[i].setDefaults()
	}
	resolvePaths(reflect.ValueOf(&cfg), dir)
	if err := l.validate(&cfg); err != nil {
		return nil, nil, err
	}
	if !s.all {
		l.prune(reflect.ValueOf(&cfg).Elem(), reflect.ValueOf(Default()), "")
	}
	return &cfg, l.unset, nil
}

type loader struct {
	file       string
	lookup     func(string) (string, bool)
	scope      scope
	lines      map[string]int    // key path → line
	valueLines map[int]string    // line of a scalar value → key path
	kinds      map[string]string // list item path → its kind: value (sources[0] → harbor)
	unset      []Unset           // check mode: variables not set
	unsetKeys  map[string]bool   // check mode: keys whose value holds an unset variable, not validated
	errs       []error
}

// fail records a problem of key, unless the scope does not read key (another stage's section) or key holds an
// unset variable that config check reports already.
func (l *loader) fail(key, problem string) {
	if l.scope.covers(key, l.kindOf) == none || l.unsetKeys[key] {
		return
	}
	// A key the file does not set (a required one) is reported at the line of the nearest key around it.
	line := l.lines[key]
	for k := key; line == 0; {
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
		line = l.lines[k]
	}
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Key: key, Problem: problem})
}

func (l *loader) kindOf(item string) string { return l.kinds[item] }

// resolvePath makes a path field absolute against dir: a string, or each string of a list of paths.
func resolvePath(v reflect.Value, dir string) {
	if v.Kind() == reflect.Slice {
		for i := 0; i < v.Len(); i++ {
			resolvePath(v.Index(i), dir)
		}
		return
	}
	if p := v.String(); p != "" && !filepath.IsAbs(p) {
		v.SetString(filepath.Join(dir, p))
	}
}

// resolvePaths makes every path of the file — a string field tagged config:"path" — absolute against dir, the
// config file's directory, so that it means the same from any working directory. This is the one place that
// does it: a new path key needs only the tag.
func resolvePaths(v reflect.Value, dir string) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			resolvePaths(v.Elem(), dir)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Tag.Get("config") == "path" {
				resolvePath(v.Field(i), dir)
				continue
			}
			resolvePaths(v.Field(i), dir)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			resolvePaths(v.Index(i), dir)
		}
	}
}

// prune sets every part of v the scope does not read back to its default (def): a list the scope reads some
// items of keeps only those.
func (l *loader) prune(v, def reflect.Value, path string) {
	for name, f := range yamlFields(v.Type()) {
		key := join(path, name)
		fv, dv := v.FieldByIndex(f.Index), def.FieldByIndex(f.Index)
		switch l.scope.covers(key, l.kindOf) {
		case full:
		case none:
			fv.Set(dv)
		case partial:
			switch fv.Kind() {
			case reflect.Struct:
				l.prune(fv, dv, key)
			case reflect.Slice:
				kept := reflect.Zero(fv.Type())
				for i := 0; i < fv.Len(); i++ {
					if l.scope.covers(fmt.Sprintf("%s[%d]", key, i), l.kindOf) != none {
						kept = reflect.Append(kept, fv.Index(i))
					}
				}
				fv.Set(kept)
			default:
				fv.Set(dv)
			}
		}
	}
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
			if why, ok := refused[key]; ok {
				l.errs = append(l.errs, &Error{File: l.file, Line: k.Line, Key: key, Problem: why})
				continue
			}
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
			if kind := mappingValue(c, "kind"); kind != "" {
				l.kinds[key] = kind
			}
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

// expand replaces ${NAME} in a string value with the environment variable NAME, when the scope reads the key;
// elsewhere the value stays as written (and is pruned later). An unset variable is an error — an empty secret
// would silently open a door — except in check mode, which lists it.
func (l *loader) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") || l.scope.covers(path, l.kindOf) == none {
		return
	}
	n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		v, ok := l.lookup(name)
		switch {
		case ok:
			return v
		case l.scope.all:
			l.unset = append(l.unset, Unset{Name: name, File: l.file, Line: n.Line, Key: path, Stages: stagesUsing(path, l.kindOf)})
			l.unsetKeys[path] = true
			return ref
		default:
			l.errs = append(l.errs, &Error{File: l.file, Line: n.Line, Key: path, Problem: unsetProblem(name, stagesUsing(path, l.kindOf))})
			return ref
		}
	})
}

// mappingValue is the scalar value of key in the mapping n, or "".
func mappingValue(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
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
