// Package registry is harborflow's client for OCI registries, built on regclient. It resolves references to
// digests with HEAD, reads manifests and image configs, classifies every artifact as an image, an index or an
// accessory (signature, attestation, SBOM, other referrer or non-image artifact), and lists tags.
//
// One Client serves every stage. It takes credentials, an extra CA, TLS and a concurrency limit per host as a
// Host each (harborflow converts its registries: section with config.RegistryHosts), verifies TLS unless a
// host says Insecure, never reads ambient credentials (~/.docker/config.json, credential helpers), and sends
// User-Agent harborflow/<version> (UserAgent) on every request so that registries and the receiver can tell
// harborflow's own reads apart. References are parsed by imageref.
//
// Request budget. Manifests are cached by registry, repository and digest, image configs by digest (both are
// immutable), so:
//   - Inspect of a single-platform image by digest costs 2 requests (manifest GET, config GET);
//   - Inspect by tag costs 2 as well (manifest GET by tag, config GET); Resolve (one HEAD) and then Inspect by
//     digest costs 3 the first time and 1 (the HEAD) once the digest is cached;
//   - Inspect of an index with P platforms costs at most 1 + 2P, and nothing for configs already cached;
//   - Resolve is one HEAD, and a HEAD of an index names the index digest, so a watcher compares digests
//     without GETs; Manifest reads an index's per-platform digests with one GET.
//
// Authentication. Each repository gets its own bearer token (regclient's RepoAuth), so the first read of a
// repository costs a 401 and a token request on top of the budget above, and later reads none.
//
// Direct reads. The manifest and config GETs of an inspection by digest are sent by the client itself rather
// than through regclient (whose per-request machinery cost a fifth of the throughput), over the same
// transports and with the authorization regclient last used for the repository; anything but a verified 200
// goes back to regclient. max_concurrency bounds the reads of both together (see hostTransport).
//
// Rate limits. A 429 answer is retried inside the client after its Retry-After (seconds or an HTTP date;
// exponential from one second without one) when the wait fits the client's bound (WithMaxRetryWait, default
// 10s) and the caller's context; otherwise the call fails at once with a *RateLimitError carrying the delay,
// which is ErrRateLimited, so a stage can hand the delay to the bus. Until that delay has passed, further
// requests to the host fail the same way without being sent. A 503 with Retry-After is waited for in the same
// way, then reported as ErrUnavailable. regclient never sees Retry-After: it would otherwise wait for any
// announced delay, however long, and make every other request to the host wait too.
//
// Writes. Overlay (a directory as one more layer on a base, placed in the base's tree: see tree.go), Rebase
// (an image moved from one base to another, each platform from its own) and Push (an OCI layout, as buildah
// writes one) write an image to a repository by digest only: the layer or the move staged with the image,
// then edited with regclient's mod package (labels, env, annotations, on every platform), with the base
// annotations per manifest and an index keeping only the platforms asked for. Layers go registry to registry,
// mounted within a registry, never downloaded to disk. No write creates a tag; Tag names the finished image.
// Each write reports the blob bytes it downloaded and uploaded, and the same inputs give the same image from
// any process, so a write redone after a crash gives no second image. An answer that follows an interrupted
// write (ErrIncompleteWrite) is met by writing again.
//
// Errors match ErrNotFound, ErrUnauthorized, ErrRateLimited, ErrUnavailable, ErrIncompleteWrite,
// ErrInvalidReference, ErrTLS or ErrBaseMismatch with errors.Is; Retryable says which are worth retrying
// later. Passwords never appear in errors or logs.
package registry
