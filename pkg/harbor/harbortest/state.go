package harbortest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/harborflow/harborflow/pkg/mediatype"
)

// Harbor's project roles (src/common/const.go).
const (
	roleProjectAdmin = 1
	roleDeveloper    = 2
	roleGuest        = 3
	roleMaintainer   = 4
)

// state is what Harbor keeps in its database: projects with their repositories, artifacts, tags, webhook
// policies and immutable rules, and labels. Server.mu guards it. With a data directory it is saved as JSON
// after every change, next to the registry's content.
type state struct {
	Seq      int64              `json:"seq"`
	Projects map[int64]*project `json:"projects"`
	Labels   map[int64]*label   `json:"labels"`
	// Reports are the vulnerability reports by digest: they belong to the digest, whichever project shows
	// it (HARBOR.md §7.1).
	Reports map[string]*scanReport `json:"reports,omitempty"`
}

type project struct {
	ID       int64                    `json:"id"`
	Name     string                   `json:"name"`
	Owner    string                   `json:"owner"`
	Created  time.Time                `json:"created"`
	Updated  time.Time                `json:"updated"`
	Metadata map[string]string        `json:"metadata"`
	Members  map[string]int           `json:"members"`
	Repos    map[string]*repoRecord   `json:"repos"`
	Policies map[int64]*policy        `json:"policies"`
	Rules    map[int64]*immutableRule `json:"rules"`
}

func (p *project) public() bool { return p.Metadata["public"] == "true" }

// repoRecord is a repository as the stand-in keeps it (payload.go has the webhook payload's repository).
type repoRecord struct {
	ID        int64                `json:"id"`
	Name      string               `json:"name"` // project/repo
	Created   time.Time            `json:"created"`
	Updated   time.Time            `json:"updated"`
	PullCount int64                `json:"pull_count"`
	Artifacts map[string]*artifact `json:"artifacts"` // by digest

	tags map[string]*artifact // tag name → artifact; rebuilt by index
}

// short is the repository's name without its project.
func (r *repoRecord) short() string {
	_, s, _ := strings.Cut(r.Name, "/")
	return s
}

// index rebuilds the tag lookup.
func (r *repoRecord) index() {
	r.tags = map[string]*artifact{}
	for _, a := range r.Artifacts {
		for _, t := range a.Tags {
			r.tags[t.Name] = a
		}
	}
}

// tagged is the artifact a tag names, with the tag.
func (r *repoRecord) tagged(name string) (*artifact, *tag) {
	a := r.tags[name]
	if a == nil {
		return nil, nil
	}
	for _, t := range a.Tags {
		if t.Name == name {
			return a, t
		}
	}
	return nil, nil
}

// lookup finds an artifact by tag or digest.
func (r *repoRecord) lookup(reference string) *artifact {
	if isDigest(reference) {
		return r.Artifacts[reference]
	}
	a, _ := r.tagged(reference)
	return a
}

// attach puts tag t on a, taking it off the artifact that had it.
func (r *repoRecord) attach(a *artifact, t *tag) {
	if old := r.tags[t.Name]; old != nil {
		old.Tags = slices.DeleteFunc(old.Tags, func(x *tag) bool { return x.Name == t.Name })
	}
	a.Tags = append(a.Tags, t)
	r.tags[t.Name] = a
}

// detach removes the tag name.
func (r *repoRecord) detach(name string) {
	if a := r.tags[name]; a != nil {
		a.Tags = slices.DeleteFunc(a.Tags, func(x *tag) bool { return x.Name == name })
	}
	delete(r.tags, name)
}

// remove deletes a with its tags.
func (r *repoRecord) remove(a *artifact) {
	for _, t := range a.Tags {
		delete(r.tags, t.Name)
	}
	delete(r.Artifacts, a.Digest)
}

// referenced reports whether another artifact of the repository has digest as a child.
func (r *repoRecord) referenced(digest string) bool {
	for _, a := range r.Artifacts {
		for _, c := range a.Children {
			if c.Digest == digest {
				return true
			}
		}
	}
	return false
}

// roots are the artifacts no other artifact of the repository refers to and that are no accessory, newest
// push first (HARBOR.md §7: lists and X-Total-Count count top-level artifacts only; §7.1: an accessory is
// not a root).
func (r *repoRecord) roots() []*artifact {
	children := map[string]bool{}
	for _, a := range r.Artifacts {
		for _, c := range a.Children {
			children[c.Digest] = true
		}
	}
	var out []*artifact
	for _, a := range r.Artifacts {
		if !children[a.Digest] && !a.accessory() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b *artifact) int {
		if c := b.PushTime.Compare(a.PushTime); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	return out
}

type artifact struct {
	ID                int64             `json:"id"`
	Digest            string            `json:"digest"`
	ManifestMediaType string            `json:"manifest_media_type"`
	ConfigMediaType   string            `json:"config_media_type,omitempty"`
	ArtifactType      string            `json:"artifact_type,omitempty"`
	Size              int64             `json:"size"`
	PushTime          time.Time         `json:"push_time"`
	PullTime          time.Time         `json:"pull_time"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	ExtraAttrs        map[string]any    `json:"extra_attrs,omitempty"`
	Children          []child           `json:"children,omitempty"`
	Subject           string            `json:"subject,omitempty"`
	// AccessoryOf is the subject digest when the artifact is an accessory (a cosign signature by tag or an
	// OCI referrer), AccessoryID its accessory id.
	AccessoryOf string  `json:"accessory_of,omitempty"`
	AccessoryID int64   `json:"accessory_id,omitempty"`
	Tags        []*tag  `json:"tags,omitempty"`
	Labels      []int64 `json:"labels,omitempty"`
}

func (a *artifact) isIndex() bool { return mediatype.IsIndex(a.ManifestMediaType) }

// newestTags are a's tags newest first, as Harbor lists them (HARBOR.md §7: "the first tag" of a payload is
// the newest).
func (a *artifact) newestTags() []*tag {
	out := slices.Clone(a.Tags)
	slices.SortFunc(out, func(x, y *tag) int {
		if c := y.PushTime.Compare(x.PushTime); c != 0 {
			return c
		}
		return cmp.Compare(y.ID, x.ID)
	})
	return out
}

// eventTag is what resources[0].tag of an event about a shows: its newest tag, or its digest when it has none
// (HARBOR.md §1.4).
func (a *artifact) eventTag() string {
	if ts := a.newestTags(); len(ts) > 0 {
		return ts[0].Name
	}
	return a.Digest
}

// child is an entry of an index.
type child struct {
	Digest      string            `json:"digest"`
	MediaType   string            `json:"media_type"`
	Size        int64             `json:"size"`
	Platform    map[string]any    `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type tag struct {
	ID       int64     `json:"id"`
	Name     string    `json:"name"`
	PushTime time.Time `json:"push_time"`
	PullTime time.Time `json:"pull_time"`
}

type label struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Color       string    `json:"color"`
	Scope       string    `json:"scope"`
	ProjectID   int64     `json:"project_id"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

type policy struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Enabled     bool      `json:"enabled"`
	EventTypes  []string  `json:"event_types"`
	Targets     []Target  `json:"targets"`
	Creator     string    `json:"creator"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

type immutableRule struct {
	ID             int64                 `json:"id"`
	Disabled       bool                  `json:"disabled"`
	Action         string                `json:"action"`
	Template       string                `json:"template"`
	Priority       int64                 `json:"priority"`
	Params         map[string]any        `json:"params,omitempty"`
	TagSelectors   []selector            `json:"tag_selectors"`
	ScopeSelectors map[string][]selector `json:"scope_selectors"`
}

type selector struct {
	Kind       string `json:"kind"`
	Decoration string `json:"decoration"`
	Pattern    string `json:"pattern"`
	Extras     string `json:"extras,omitempty"`
}

func newState() *state {
	return &state{Projects: map[int64]*project{}, Labels: map[int64]*label{}, Reports: map[string]*scanReport{}}
}

// next is the next id; one sequence serves every kind, which keeps ids unique and increasing.
func (st *state) next() int64 {
	st.Seq++
	return st.Seq
}

// projectByName finds a project by name.
func (st *state) projectByName(name string) *project {
	for _, p := range st.Projects {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// projectRef finds a project by name, or by id when allowID and the value is an integer (HARBOR.md §3.1:
// project_name_or_id is an id unless X-Is-Resource-Name is true).
func (st *state) projectRef(v string, allowID bool) *project {
	if allowID {
		if id, err := strconv.ParseInt(v, 10, 64); err == nil {
			return st.Projects[id]
		}
	}
	return st.projectByName(v)
}

// newProject adds a project.
func (st *state) newProject(name, owner string, metadata map[string]string, now time.Time) *project {
	p := &project{
		ID: st.next(), Name: name, Owner: owner, Created: now, Updated: now,
		Metadata: map[string]string{"public": "false"}, Members: map[string]int{},
		Repos: map[string]*repoRecord{}, Policies: map[int64]*policy{}, Rules: map[int64]*immutableRule{},
	}
	for k, v := range metadata {
		p.Metadata[k] = v
	}
	if owner != "" {
		p.Members[owner] = roleProjectAdmin
	}
	st.Projects[p.ID] = p
	return p
}

// repo finds or, with create, makes a repository of p.
func (st *state) repo(p *project, full string, create bool, now time.Time) *repoRecord {
	if r := p.Repos[full]; r != nil || !create {
		return r
	}
	r := &repoRecord{ID: st.next(), Name: full, Created: now, Updated: now, Artifacts: map[string]*artifact{}, tags: map[string]*artifact{}}
	p.Repos[full] = r
	return r
}

const stateFile = "harbortest.json"

// loadState reads the state saved in dir, or starts a new one when there is none.
func loadState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the stand-in's state: %w", err)
	}
	st := newState()
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("decoding the stand-in's state %s: %w", filepath.Join(dir, stateFile), err)
	}
	for _, p := range st.Projects {
		for _, r := range p.Repos {
			r.index()
		}
	}
	if st.Reports == nil {
		st.Reports = map[string]*scanReport{}
	}
	// A scan under way when the stand-in stopped never ends: it is stopped.
	for _, r := range st.Reports {
		if r.Status == scanRunning {
			r.Status, r.End = scanStopped, r.Start
		}
	}
	return st, nil
}

// save writes the state to dir atomically.
func (st *state) save(dir string) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding the stand-in's state: %w", err)
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("saving the stand-in's state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("saving the stand-in's state: %w", err)
	}
	return nil
}
