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
// Retries: one layer. The client tries a request once and fails the call; the caller retries it later (a
// stage by returning the error to the bus, which redelivers the message with its back-off — 1s, 5s, 30s, 2m
// by default — and dead-letters it after MaxDeliver; the watcher at its next poll). So a worker is never held
// by a registry that cannot be reached:
//
//	layer                what it retries                                        how long it holds a call
//	net/http             a request on a reused connection the registry had       no wait; once
//	                     closed (idempotent requests only)
//	regclient            the request after a 401, with a token (authentication,  one token request
//	                     not a retry of a failure); nothing else
//	retryTransport       a 429, or a 503 with Retry-After, whose delay is at     at most WithMaxRetryWait
//	                     most WithMaxRetryWait (default 2s): once                (default 2s), once
//	the caller (the bus) everything else: no connection (DNS, refused, reset,    —
//	                     ConnectTimeout), TLS, no answer to a read within
//	                     WithResponseTimeout (default 10s), 5xx, a longer
//	                     Retry-After (bus.Retry with the delay)
//
// A failure that goes to the caller is ErrUnavailable (or ErrRateLimited, with the delay), which Retryable
// reports as retryable. Every call ends as soon as its context does. The log says which layer retries: the
// field retry_layer is "registry_client" when the client sends a request again and "caller" when it gives
// up; WithMetrics counts every request by outcome (harborflow_registry_requests_total) and the client's own
// retries (harborflow_registry_retries_total).
//
// Rate limits. A 429 answer is retried inside the client after its Retry-After (seconds or an HTTP date; one
// second without one) when the wait fits the client's bound (WithMaxRetryWait, default 2s) and the caller's
// context; otherwise, or when the second attempt is refused too, the call fails at once with a
// *RateLimitError carrying the delay, which is ErrRateLimited, so a stage can hand the delay to the bus.
// Until that delay has passed, further requests to the host fail the same way without being sent. A 503 with
// Retry-After is waited for in the same way, then reported as ErrUnavailable. regclient never sees
// Retry-After: it would otherwise wait for any announced delay, however long, and make every other request to
// the host wait too.
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
