// Package provenance writes and reads the SLSA provenance v1 of an image harborflow rebuilt: an in-toto
// statement (https://in-toto.io/Statement/v1) whose subject is the image and whose predicate
// (https://slsa.dev/provenance/v1) says how it was made — the base image followed and the digest built on,
// per platform too, the recipe, the builder kind, a digest of the build context's files, the event that
// triggered the build and its correlation id, harborflow's version, and when the build started and finished.
//
// The statement is built with the in-toto attestation library's types and checked with their validators, so
// what Statement writes is what `cosign verify-attestation --type slsaprovenance1` and other in-toto readers
// expect. pkg/signature signs it into a DSSE envelope under the image's cosign tag sha256-<hex>.att.
//
//	st, err := provenance.Statement(provenance.Build{Image: "harbor.example/acme/am", Digest: "sha256:…", …})
//	b, err := provenance.Parse(st) // b.BaseImage: what the promoter's provenance gate checks
package provenance
