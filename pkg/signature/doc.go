// Package signature signs image digests the way `cosign sign --key` does, and verifies such signatures
// against configured public keys, without a transparency log or Fulcio (none is reachable from harborflow's
// registries).
//
// A signature of registry/repository@sha256:<hex> lives in the same repository under cosign's tag
// sha256-<hex>.sig: an OCI image manifest with one layer per signature. Each layer is a simple-signing payload
// (media type application/vnd.dev.cosign.simplesigning.v1+json) naming the digest and the repository, and its
// annotation dev.cosignproject.cosign/signature holds the base64 ECDSA-SHA256 (ASN.1) signature of the
// payload's bytes. `cosign verify --key pub.pem --insecure-ignore-tlog=true` accepts what Sign writes (for a
// plain-HTTP registry add --allow-insecure-registry --allow-http-registry).
//
// Attest attaches an in-toto statement (package provenance writes harborflow's) the way `cosign attest --key`
// does: a DSSE envelope (payload type application/vnd.in-toto+json) signed with the key, as a layer of media
// type application/vnd.dsse.envelope.v1+json annotated with its predicateType, under the tag sha256-<hex>.att.
// `cosign verify-attestation --key pub.pem --type slsaprovenance1 --insecure-ignore-tlog=true` accepts it;
// VerifyAttestation checks it the same way (the envelope's signature, the predicate type, the digest among the
// statement's subjects) and returns the statement.
//
// Keys come from cosign's encrypted private key format (`cosign generate-key-pair`: a PEM block "ENCRYPTED
// SIGSTORE PRIVATE KEY", or "ENCRYPTED COSIGN PRIVATE KEY" from older cosign, decrypted with its password),
// or from a plain PEM private key (ECDSA P-256 in SEC 1 "EC PRIVATE KEY" or PKCS #8 "PRIVATE KEY"). Verifiers
// come from PEM public keys; several are accepted at once, for key rotation.
//
//	signer, err := signature.LoadSigner(keyPEM, []byte(os.Getenv("COSIGN_PASSWORD")))
//	_, err = signer.Sign(ctx, client, "harbor.example/wso2/am@sha256:...")
//	verifiers, err := signature.LoadVerifiers(oldPub, newPub)
//	err = signature.Verify(ctx, client, "harbor.example/wso2/am@sha256:...", verifiers)
//	_, err = signer.Attest(ctx, client, "harbor.example/wso2/am@sha256:...", statement)
//	statement, err = signature.VerifyAttestation(ctx, client, "harbor.example/wso2/am@sha256:...", verifiers, provenance.PredicateType)
//
// Sign and Attest are idempotent: when the .sig tag already holds a signature of the digest that verifies with
// the signer's key (the .att tag an attestation of the same predicate type), they write nothing, so a
// redelivered build does not pile them up. Those made with other keys stay, and ours is added as another
// layer, as cosign does. Two Signs of the same digest at the
// same moment may each write, and the last tag write wins: callers sign an image from one place at a time.
//
// Verify's errors say why a digest is not verified: ErrNotSigned, ErrTampered (a payload for another
// digest, or altered) or ErrUntrustedKey (signed, but with no key configured). Sign marks each layer it
// writes with the signing key's ID (annotation io.harborflow.signature.key), so that an altered signature
// made with a configured key is reported as ErrTampered rather than ErrUntrustedKey. The mark only chooses
// between these two errors: it never makes a signature verify.
package signature
