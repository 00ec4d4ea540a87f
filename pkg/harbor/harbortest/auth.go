package harbortest

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// user is who makes a request; the zero user is anonymous.
type user struct {
	name  string
	admin bool // system administrator
}

func (u user) anonymous() bool { return u.name == "" }

// tokenGrant is who a registry token was issued to.
type tokenGrant struct {
	user    user
	expires time.Time
}

const tokenLifetime = 30 * time.Minute

// checkPassword returns the user of a name and password, ok false when they do not match.
func (s *Server) checkPassword(name, password string) (user, bool) {
	if name == s.opts.admin {
		return user{name: name, admin: true}, subtle.ConstantTimeCompare([]byte(password), []byte(s.opts.adminPass)) == 1
	}
	want, known := s.opts.users[name]
	if !known {
		return user{}, false
	}
	return user{name: name}, subtle.ConstantTimeCompare([]byte(password), []byte(want)) == 1
}

// apiUser is the user of an API request. Basic auth with a wrong password is not refused: the request goes
// on as anonymous, as a real Harbor 2.13.5 was seen doing (HARBOR.md §7).
func (s *Server) apiUser(r *http.Request) user {
	name, password, ok := r.BasicAuth()
	if !ok {
		return user{}
	}
	u, ok := s.checkPassword(name, password)
	if !ok {
		return user{}
	}
	return u
}

// registryUser is the user of a /v2/ request: a token from /service/token or basic auth. ok is false when
// credentials were given and are not valid.
func (s *Server) registryUser(r *http.Request) (u user, ok bool) {
	h := r.Header.Get("Authorization")
	switch {
	case h == "":
		return user{}, true
	case strings.HasPrefix(strings.ToLower(h), "bearer "):
		s.mu.Lock()
		defer s.mu.Unlock()
		g, found := s.tokens[strings.TrimSpace(h[len("bearer "):])]
		if !found || s.now().After(g.expires) {
			return user{}, false
		}
		return g.user, true
	default:
		name, password, basic := r.BasicAuth()
		if !basic {
			return user{}, false
		}
		return s.checkPassword(name, password)
	}
}

// serveToken is Harbor's token service (/service/token): basic auth gets a token for that user, no
// credentials an anonymous one, wrong ones 401. The token names the user only; each /v2/ request is then
// checked against the user's project roles, so scopes need not be encoded.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	u := user{}
	if name, password, ok := r.BasicAuth(); ok {
		var valid bool
		if u, valid = s.checkPassword(name, password); !valid {
			writeError(w, errorf(http.StatusUnauthorized, codeUnauthorized, "authentication failed"))
			return
		}
	}
	now := s.now()
	tok := randomToken()
	s.mu.Lock()
	for k, g := range s.tokens {
		if now.After(g.expires) {
			delete(s.tokens, k)
		}
	}
	s.tokens[tok] = tokenGrant{user: u, expires: now.Add(tokenLifetime)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token": tok, "access_token": tok, "expires_in": int(tokenLifetime / time.Second),
		"issued_at": now.UTC().Format(time.RFC3339),
	})
}

// access is what a request does to a project.
type access int

const (
	accessRead     access = iota // read a project, pull
	accessWrite                  // push, copy into, create a tag, add a label
	accessDelete                 // delete an artifact or a tag
	accessMaintain               // immutable rules, project labels, read webhook policies
	accessAdmin                  // webhook policies, metadata, delete the project
)

// role is u's role in p (a system administrator is every project's admin); 0 for none.
func (s *Server) role(u user, p *project) int {
	if u.admin {
		return roleProjectAdmin
	}
	if u.anonymous() {
		return 0
	}
	return p.Members[u.name]
}

// allowed reports whether u may do a to p, following Harbor's role matrix.
func (s *Server) allowed(u user, p *project, a access) bool {
	role := s.role(u, p)
	switch a {
	case accessRead:
		return p.public() || role != 0
	case accessWrite:
		return role == roleProjectAdmin || role == roleMaintainer || role == roleDeveloper
	case accessDelete, accessMaintain:
		return role == roleProjectAdmin || role == roleMaintainer
	default:
		return role == roleProjectAdmin
	}
}

// authorize answers nil when u may do a to p, else 401 for an anonymous user and 403 for a known one.
func (s *Server) authorize(u user, p *project, a access) *apiError {
	if s.allowed(u, p, a) {
		return nil
	}
	if u.anonymous() {
		return errUnauthorized
	}
	return errForbidden
}

// Roles AddMember gives.
const (
	RoleProjectAdmin = "projectAdmin"
	RoleMaintainer   = "maintainer"
	RoleDeveloper    = "developer"
	RoleGuest        = "guest"
)

// AddMember makes user a member of project with role (RoleProjectAdmin, RoleMaintainer, RoleDeveloper or
// RoleGuest).
func (s *Server) AddMember(t testing.TB, projectName, userName, role string) {
	t.Helper()
	roles := map[string]int{RoleProjectAdmin: roleProjectAdmin, RoleMaintainer: roleMaintainer, RoleDeveloper: roleDeveloper, RoleGuest: roleGuest}
	id, known := roles[role]
	if !known {
		t.Fatalf("harbortest: unknown role %q", role)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.st.projectByName(projectName)
	if p == nil {
		t.Fatalf("harbortest: no project %q", projectName)
	}
	p.Members[userName] = id
	_ = s.saveLocked()
}

// challenge is the Www-Authenticate of a /v2/ 401, as Harbor's (HARBOR.md §7): the realm is the token
// service, with the scope the request needed, and insufficient_scope when a user was known.
func (s *Server) challenge(scope string, known bool) string {
	c := fmt.Sprintf(`Bearer realm="%s/service/token",service="harbor-registry"`, s.url)
	if scope != "" {
		c += fmt.Sprintf(`,scope="%s"`, scope)
	}
	if known {
		c += `,error="insufficient_scope"`
	}
	return c
}

// CreateProject makes a project owned by the administrator, as POST /projects would, and returns its id.
// metadata values are Harbor's strings ("auto_scan": "true").
func (s *Server) CreateProject(t testing.TB, name string, public bool, metadata map[string]string) int64 {
	t.Helper()
	md := map[string]string{}
	for k, v := range metadata {
		md[k] = v
	}
	md["public"] = fmt.Sprint(public)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !projectNameRE.MatchString(name) {
		t.Fatalf("harbortest: %q is not a project name Harbor accepts", name)
	}
	if s.st.projectByName(name) != nil {
		t.Fatalf("harbortest: project %q exists", name)
	}
	p := s.st.newProject(name, s.opts.admin, md, s.now())
	_ = s.saveLocked()
	return p.ID
}
