package broker_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/broker"
)

// A port that is taken fails the start at once, naming the address and the cause, instead of waiting out the
// start timeout with the cause only in an earlier log line.
func TestStartOnATakenPortFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	s, err := broker.Start(broker.Config{Listen: ln.Addr().String(), StoreDir: t.TempDir(), StartTimeout: 10 * time.Second}, nil)
	if err == nil {
		s.Shutdown()
		t.Fatal("started on a taken port")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s to fail, want well under the 10 s start timeout", took)
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error = %q, want the address and the cause", err)
	}
}
