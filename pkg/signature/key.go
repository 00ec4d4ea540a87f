package signature

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigstore "github.com/sigstore/sigstore/pkg/signature"
)

// PEM block types of private keys LoadSigner reads.
const (
	// pemEncryptedSigstore is what `cosign generate-key-pair` writes (cosign 2.x).
	pemEncryptedSigstore = "ENCRYPTED SIGSTORE PRIVATE KEY"
	// pemEncryptedCosign is what cosign wrote before 2.0; the content is the same.
	pemEncryptedCosign = "ENCRYPTED COSIGN PRIVATE KEY"
	pemECPrivate       = "EC PRIVATE KEY"
	pemPKCS8Private    = "PRIVATE KEY"
	pemPublic          = "PUBLIC KEY"
)

// Signer signs image digests with a private key. It is safe for concurrent use.
type Signer struct {
	sv  sigstore.SignerVerifier
	pub *Verifier
}

// Generate makes a new ECDSA P-256 key and returns its signer: for tests and local runs that need a key of
// their own (a deployment's key comes from cosign generate-key-pair, read with LoadSigner).
func Generate() (*Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: generating a key: %v", ErrKey, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding a generated key: %v", ErrKey, err)
	}
	return LoadSigner(pem.EncodeToMemory(&pem.Block{Type: pemPKCS8Private, Bytes: der}), nil)
}

// LoadSigner reads a private key from PEM: cosign's encrypted format, decrypted with password, or a plain
// ECDSA P-256 key (SEC 1 or PKCS #8), for which password is ignored. The error is ErrKey when the key cannot
// be read or the password is wrong.
func LoadSigner(keyPEM, password []byte) (*Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("%w: loading the signing key: no PEM block", ErrKey)
	}
	var priv crypto.PrivateKey
	switch block.Type {
	case pemEncryptedSigstore, pemEncryptedCosign:
		// cosign encrypts the PKCS #8 DER with go-securesystemslib (scrypt, then nacl/secretbox).
		der, err := encrypted.Decrypt(block.Bytes, password)
		if err != nil {
			return nil, fmt.Errorf("%w: decrypting the %s (wrong password?): %v", ErrKey, block.Type, err)
		}
		if priv, err = x509.ParsePKCS8PrivateKey(der); err != nil {
			return nil, fmt.Errorf("%w: parsing the decrypted %s: %v", ErrKey, block.Type, err)
		}
	case pemECPrivate, pemPKCS8Private:
		var err error
		if priv, err = cryptoutils.UnmarshalPEMToPrivateKey(pem.EncodeToMemory(block), cryptoutils.SkipPassword); err != nil {
			return nil, fmt.Errorf("%w: parsing the %s: %v", ErrKey, block.Type, err)
		}
		if k, ok := priv.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: the %s is a %T: want ECDSA P-256", ErrKey, block.Type, priv)
		}
	default:
		return nil, fmt.Errorf("%w: PEM block %q: want %q, %q, %q or %q", ErrKey, block.Type,
			pemEncryptedSigstore, pemEncryptedCosign, pemECPrivate, pemPKCS8Private)
	}
	sv, err := sigstore.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: loading the signing key: %v", ErrKey, err)
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: the signing key's public key: %v", ErrKey, err)
	}
	v, err := newVerifier(pub)
	if err != nil {
		return nil, err
	}
	return &Signer{sv: sv, pub: v}, nil
}

// Verifier is the signer's public key, as a Verifier.
func (s *Signer) Verifier() *Verifier { return s.pub }

// Verifier checks signatures with one public key.
type Verifier struct {
	v   sigstore.Verifier
	pem []byte
	id  string
}

// LoadVerifiers reads the public keys ("PUBLIC KEY" PEM blocks, PKIX) of each of pemData; one may hold
// several blocks. A signature verifies when it verifies with any of them. The error is ErrKey when a block is
// not a public key, or when there is none.
func LoadVerifiers(pemData ...[]byte) ([]*Verifier, error) {
	var out []*Verifier
	for i, data := range pemData {
		rest := data
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != pemPublic {
				return nil, fmt.Errorf("%w: public key %d: PEM block %q: want %q", ErrKey, i+1, block.Type, pemPublic)
			}
			pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem.EncodeToMemory(block))
			if err != nil {
				return nil, fmt.Errorf("%w: public key %d: %v", ErrKey, i+1, err)
			}
			v, err := newVerifier(pub)
			if err != nil {
				return nil, fmt.Errorf("public key %d: %w", i+1, err)
			}
			out = append(out, v)
		}
		if len(bytes.TrimSpace(rest)) > 0 {
			return nil, fmt.Errorf("%w: public key %d: text that is not PEM", ErrKey, i+1)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no public key", ErrKey)
	}
	return out, nil
}

func newVerifier(pub crypto.PublicKey) (*Verifier, error) {
	v, err := sigstore.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: loading the public key: %v", ErrKey, err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding the public key: %v", ErrKey, err)
	}
	sum := sha256.Sum256(der)
	return &Verifier{
		v:   v,
		pem: pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}),
		id:  "sha256:" + hex.EncodeToString(sum[:]),
	}, nil
}

// KeyID is the SHA-256 of the public key's PKIX DER, as sha256:<hex>.
func (v *Verifier) KeyID() string { return v.id }

// PublicKeyPEM is the public key as a "PUBLIC KEY" PEM block: what `cosign verify --key` reads.
func (v *Verifier) PublicKeyPEM() []byte { return bytes.Clone(v.pem) }

// verifies reports whether l, a simple-signing layer, is signed by this key.
func (v *Verifier) verifies(l layer) bool { return v.verify(l.sig, l.payload) }

// verify reports whether sig is a signature of payload by this key.
func (v *Verifier) verify(sig, payload []byte) bool {
	return v.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload)) == nil
}
