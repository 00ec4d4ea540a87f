package registry_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/secret"
)

// A stage resolves the tag an event names with a HEAD, skips digests it knows, and inspects the rest by
// digest; a rate limit or an outage is handed back to the bus with the registry's delay.
func ExampleClient() {
	c, err := registry.New([]registry.Host{
		{Name: "harbor.acme.example", Username: "robot$harborflow", Password: secret.Secret(os.Getenv("HARBOR_ROBOT_SECRET")), MaxConcurrency: 8},
	}, registry.WithVersion("1.2.3"), registry.WithLogger(zap.NewNop()))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const tagRef = "harbor.acme.example/wso2-dev/acme-am:4.2.0.15.1"
	d, err := c.Resolve(ctx, tagRef)
	if err == nil {
		var a *registry.Artifact
		if a, err = c.Inspect(ctx, tagRef+"@"+d.Digest); err == nil && a.Kind != registry.KindAccessory {
			fmt.Println(a.Kind, a.Labels["update_level"], len(a.Platforms))
		}
	}
	switch {
	case err == nil:
	case registry.Retryable(err):
		delay, _ := registry.RetryAfter(err) // 0: the bus's own back-off
		fmt.Println("retry in", delay, err)
	case errors.Is(err, registry.ErrNotFound):
		fmt.Println("gone:", err)
	default:
		fmt.Println("giving up:", err)
	}
}
