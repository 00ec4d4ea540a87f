package signature_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/signature"
)

// The rebuilder signs what it pushed with cosign.key (its password from the environment, as config passes
// ${NAME}); the promoter verifies against every public key in rotation and blocks with the reason.
func Example() {
	client, err := registry.New([]registry.Host{{Name: "harbor.acme.example"}})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const image = "harbor.acme.example/wso2-dev/acme-am@sha256:dc69db393c5b98c726e9c0b3560248a5489a765cffc8c98e4dae6c1286e16c65"

	keyPEM, _ := os.ReadFile("cosign.key")
	signer, err := signature.LoadSigner(keyPEM, []byte(os.Getenv("COSIGN_PASSWORD")))
	if err == nil {
		_, err = signer.Sign(ctx, client, image)
	}
	if err != nil {
		fmt.Println("not signed:", err)
		return
	}

	current, _ := os.ReadFile("cosign.pub")
	previous, _ := os.ReadFile("cosign-2025.pub")
	verifiers, err := signature.LoadVerifiers(current, previous)
	if err == nil {
		err = signature.Verify(ctx, client, image, verifiers)
	}
	switch {
	case err == nil:
		fmt.Println("verified")
	case errors.Is(err, signature.ErrNotSigned), errors.Is(err, signature.ErrTampered), errors.Is(err, signature.ErrUntrustedKey):
		fmt.Println("blocked:", err)
	default: // a registry error: retry later
		fmt.Println("retry:", err)
	}
}
