package signature

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/harborflow/harborflow/pkg/registry"
)

// What `cosign attest` writes, and `cosign verify-attestation` reads back.
const (
	// MediaTypeDSSE is the media type of an attestation layer: a DSSE envelope.
	MediaTypeDSSE = "application/vnd.dsse.envelope.v1+json"
	// PayloadTypeInToto is the envelope's payload type: an in-toto statement.
	PayloadTypeInToto = "application/vnd.in-toto+json"
	// AnnotationPredicateType holds, on an attestation layer, its statement's predicate type (unsigned: a hint
	// for readers, checked against the signed statement).
	AnnotationPredicateType = "predicateType"
)

// Attest attaches statement (an in-toto statement, JSON, naming image's digest among its subjects) to image
// (registry/repository@digest) as `cosign attest --key` does: a DSSE envelope of the statement signed with
// this key, as a layer of the manifest under the tag sha256-<hex>.att of the same repository. When that tag
// already holds an attestation of the digest with the statement's predicate type signed with this key,
// nothing is written; other attestations stay, and this one is added as another layer.
func (s *Signer) Attest(ctx context.Context, client *registry.Client, image string, statement []byte) (Signed, error) {
	t, err := parseTarget(image, AttestationTagSuffix)
	if err != nil {
		return Signed{}, fmt.Errorf("attesting: %w", err)
	}
	st, err := decodeStatement(statement)
	if err != nil {
		return Signed{}, fmt.Errorf("attesting %s: %w", image, err)
	}
	if !st.about(t.digest) {
		return Signed{}, fmt.Errorf("attesting %s: the statement's subjects do not include %s", image, t.digest)
	}
	out := Signed{Ref: t.repository + ":" + t.tag}
	m, ok, err := existing(ctx, client, t)
	if err != nil {
		return Signed{}, fmt.Errorf("attesting %s: %w", image, err)
	}
	if ok {
		layers, err := readLayers(ctx, client, t, m, MediaTypeDSSE)
		if err != nil {
			return Signed{}, fmt.Errorf("attesting %s: %w", image, err)
		}
		for _, l := range layers {
			if l.bad != "" || !s.pub.verifiesEnvelope(l) {
				continue
			}
			if ok, _ := attests(l.payload, t.digest, st.PredicateType); ok {
				out.Digest = m.digest
				return out, nil
			}
		}
	}
	env, err := dsse.WrapSigner(s.sv, PayloadTypeInToto).SignMessage(bytes.NewReader(statement))
	if err != nil {
		return Signed{}, fmt.Errorf("attesting %s: %w", image, err)
	}
	layer := descriptor{MediaType: MediaTypeDSSE, Annotations: map[string]string{
		AnnotationSignature:     "", // cosign writes it empty: the signature is in the envelope
		AnnotationPredicateType: st.PredicateType,
		AnnotationKey:           s.pub.id,
	}}
	md, err := appendLayer(ctx, client, t, m, layer, env)
	if err != nil {
		return Signed{}, fmt.Errorf("attesting %s: %w", image, err)
	}
	out.Digest, out.Added = md, true
	return out, nil
}

// VerifyAttestation returns the statement of an attestation of image (registry/repository@digest), under its
// sha256-<hex>.att tag, that has predicateType, names exactly that digest as a subject, and verifies with one
// of verifiers. Otherwise the error says why, as Verify's do: ErrNotSigned (no attestation of that type),
// ErrTampered or ErrUntrustedKey; a registry error is returned as such.
func VerifyAttestation(ctx context.Context, client *registry.Client, image string, verifiers []*Verifier, predicateType string) ([]byte, error) {
	t, err := parseTarget(image, AttestationTagSuffix)
	if err != nil {
		return nil, fmt.Errorf("verifying the attestation: %w", err)
	}
	if len(verifiers) == 0 {
		return nil, fmt.Errorf("verifying the attestation of %s: %w: no public key configured", image, ErrKey)
	}
	all, err := read(ctx, client, t, MediaTypeDSSE)
	if err != nil {
		return nil, fmt.Errorf("verifying the attestation of %s: %w", image, err)
	}
	var layers []layer // those that say they are of predicateType, or say nothing
	for _, l := range all {
		if l.predicateType == "" || l.predicateType == predicateType {
			layers = append(layers, l)
		}
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("verifying the attestation of %s: %w: tag %s holds no %s attestation", image, ErrNotSigned, t.tag, predicateType)
	}
	l, err := judge(layers, verifiers, (*Verifier).verifiesEnvelope, func(l layer) (bool, string) {
		return attests(l.payload, t.digest, predicateType)
	})
	if err != nil {
		return nil, fmt.Errorf("verifying the attestation of %s: %w", image, err)
	}
	return open(l.payload) // attests opened it already
}

// verifiesEnvelope reports whether l, an attestation layer, is a DSSE envelope of an in-toto statement signed
// by this key.
func (v *Verifier) verifiesEnvelope(l layer) bool {
	return dsse.WrapVerifier(v.v, dsse.WithExpectedPayloadType(PayloadTypeInToto)).VerifySignature(bytes.NewReader(l.payload), nil) == nil
}

// statement is the part of an in-toto statement attestations are checked by.
type statement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

func decodeStatement(b []byte) (statement, error) {
	var st statement
	if err := json.Unmarshal(b, &st); err != nil {
		return statement{}, fmt.Errorf("not an in-toto statement: %w", err)
	}
	if st.PredicateType == "" {
		return statement{}, fmt.Errorf("not an in-toto statement: no predicateType")
	}
	return st, nil
}

// about reports whether the statement names digest (alg:<hex>) as a subject.
func (st statement) about(digest string) bool {
	alg, hexPart, _ := strings.Cut(digest, ":")
	for _, s := range st.Subject {
		if s.Digest[alg] == hexPart {
			return true
		}
	}
	return false
}

// open returns the statement in a DSSE envelope (whose payload type the envelope's verification checked).
func open(envelope []byte) ([]byte, error) {
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("not a DSSE envelope: %w", err)
	}
	st, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("the DSSE envelope's payload is not base64: %w", err)
	}
	return st, nil
}

// attests reports whether envelope holds a statement of predicateType about digest; when it does not, it says
// what it holds.
func attests(envelope []byte, digest, predicateType string) (bool, string) {
	b, err := open(envelope)
	if err != nil {
		return false, err.Error()
	}
	st, err := decodeStatement(b)
	switch {
	case err != nil:
		return false, "the payload is " + err.Error()
	case st.PredicateType != predicateType:
		return false, "the statement is of type " + st.PredicateType
	case !st.about(digest):
		return false, "the statement is not about " + digest
	}
	return true, ""
}
