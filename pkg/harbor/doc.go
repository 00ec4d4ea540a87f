// Package harbor is harborflow's client of Harbor's REST API v2.0: projects, repositories, artifacts, tags,
// labels, scans, webhook policies and immutable tag rules, the calls promotion, retention and
// `harborflow harbor setup-webhooks` make. It wraps github.com/goharbor/go-client v0.213.1 and corrects what
// that library leaves to its caller (../shared/HARBOR.md §3, §4):
//
//   - TLS is always verified unless Host.Insecure says otherwise, with the same transport the registry client
//     builds for a host (registry.HTTPTransport): go-client's NewClientSet never verifies certificates (§4.1).
//   - The base URL is normalised to <scheme>://<host>/api/v2.0 (§4.1: any other path, even "/", is taken as the
//     base path as given).
//   - Repository names are escaped twice (a/b → a%252Fb on the wire; §3.1), and project names are sent with
//     X-Is-Resource-Name: true, so that a project named 123 is not taken for the project with id 123.
//   - Lists return every item: pages of 100 (Harbor's maximum) following X-Total-Count.
//   - Every request carries X-Request-Id (the context's, see ContextWithRequestID, or a new one) and
//     User-Agent: harborflow/<version>.
//   - Failures are *Error values matching one sentinel (ErrNotFound, ErrConflict, ErrPrecondition, …) with
//     Harbor's own code and message, whether go-client decoded the status or not (§4.2: undeclared statuses
//     come back as *runtime.APIError without a body).
//
// Results are this package's own small types, not go-client's models: they carry what the stages use with
// plain values (time.Time, not strfmt; maps, not pointers to optional strings), the image config labels
// Harbor hides in extra_attrs, and webhook auth headers as secret.Secret, since Harbor returns them in clear
// (§7).
package harbor
