package harborflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// demoLevels are the update levels the demo publishes; demoHigh is the one whose scan finds a High
// vulnerability, demoApproved the one a person approves for the last stage.
var demoLevels = []int64{15, 16, 17, 18, 19}

const (
	demoHigh     = 18
	demoApproved = 16
)

func newDevDemoCommand(cfgPath func() string) *cobra.Command {
	var timeout time.Duration
	var push string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show the whole trail on what `make run` started: bases 4.2.0.15–19 inspected, rebuilt, promoted, pruned",
		Long: `On the system make run starts (the configuration of deploy/harborflow.yaml): publish a "wso2am 4.2.0" base
with update levels 15 to 19, one after another (scripts/push-base.sh: two platforms, update_level label, USER
802), and show the trail as it happens: inspected, rebuilt with the overlay builder, promoted dev → staging
once Harbor's scan is clean (level 18's scan finds a High vulnerability: blocked, with the reason), staging →
prod for level 16 after an approval, and retention keeping three builds per version, never the rolling tags.
It ends with harborflow history of the derived image, and exits 0 only if every step happened.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return runDemo(ctx, cmd.OutOrStdout(), cfgPath, push)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 6*time.Minute, "give up (exit 1) after this long")
	cmd.Flags().StringVar(&push, "push", "scripts/push-base.sh", "the script that pushes a base: LEVEL REPOSITORY [LABEL=VALUE ...]")
	return cmd
}

// demo follows image.* and waits for the trail's steps.
type demo struct {
	w      io.Writer
	follow <-chan *bus.Message
	errs   <-chan error
	seen   []*bus.Message
}

func runDemo(ctx context.Context, w io.Writer, cfgPath func() string, push string) error {
	cfg, err := config.Load(cfgPath(), event.StagePromoter, event.StageRebuilder, event.StageRetention)
	if err != nil {
		return err
	}
	if len(cfg.Rebuilds) == 0 || len(cfg.Promotions) == 0 || len(cfg.Promotions[0].Stages) < 3 || len(cfg.Retention) == 0 {
		return errors.New("the demo needs a rebuild, a promotion chain of three stages and a retention policy: run it on deploy/harborflow.yaml")
	}
	if err := waitReady(ctx, "http://"+cfg.HTTP.Listen+"/readyz"); err != nil {
		return fmt.Errorf("harborflow is not running (start it with make run): %w", err)
	}
	nc, b, err := connectTo(ctx, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	d := startDemo(ctx, w, b)
	rc, chain := cfg.Rebuilds[0], cfg.Promotions[0]
	base := strings.TrimSuffix(rc.Base, ":"+rc.Base[strings.LastIndex(rc.Base, ":")+1:])
	first, second, last := chain.Stages[0], chain.Stages[1], chain.Stages[2]

	builds := map[int64]*harborflowv1.ImageRebuilt{}
	for _, level := range demoLevels {
		args := []string{strconv.FormatInt(level, 10), base}
		if level == demoHigh {
			args = append(args, "harbortest.severity=High")
		}
		fmt.Fprintf(w, "\n== update level %d: pushing %s:4.2.0.%d%s\n", level, base, level, map[bool]string{true: " (its scan will find a High vulnerability)"}[level == demoHigh])
		out, err := exec.CommandContext(ctx, push, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pushing update level %d: %w\n%s", level, err, out)
		}
		rb := &harborflowv1.ImageRebuilt{}
		if err := d.await(ctx, fmt.Sprintf("update level %d rebuilt", level), event.SubjectImageRebuilt, rb, func() bool {
			return rb.GetUpdateLevel() == level && rb.GetRecipe() == rc.Name
		}); err != nil {
			return err
		}
		builds[level] = rb
		if level == demoHigh {
			bl := &harborflowv1.ImageBlocked{}
			if err := d.await(ctx, fmt.Sprintf("%s blocked on its way to %s", rb.GetTag(), second.Name), event.SubjectImageBlocked, bl, func() bool {
				return bl.GetDigest() == rb.GetDigest() && bl.GetToStage() == second.Name
			}); err != nil {
				return err
			}
			continue
		}
		pr := &harborflowv1.ImagePromoted{}
		if err := d.await(ctx, fmt.Sprintf("%s promoted to %s", rb.GetTag(), second.Name), event.SubjectImagePromoted, pr, func() bool {
			return pr.GetDigest() == rb.GetDigest() && pr.GetToStage() == second.Name
		}); err != nil {
			return err
		}
		if level == demoApproved {
			fmt.Fprintf(w, "== approving %s for %s\n", rb.GetTag(), last.Name)
			approve := newApproveCommand(cfgPath)
			approve.SetArgs([]string{chain.Name, rb.GetTag(), "--stage", last.Name, "--by", "demo"})
			approve.SetOut(w)
			if err := approve.ExecuteContext(ctx); err != nil {
				return fmt.Errorf("approving %s: %w", rb.GetTag(), err)
			}
			if err := d.await(ctx, fmt.Sprintf("%s promoted to %s", rb.GetTag(), last.Name), event.SubjectImagePromoted, pr, func() bool {
				return pr.GetDigest() == rb.GetDigest() && pr.GetToStage() == last.Name
			}); err != nil {
				return err
			}
		}
	}

	// Retention in the first stage: five builds of 4.2.0, three kept (the newest, which latest and 4.2.0 point
	// to, among them), the two oldest deleted.
	keep := cfg.Retention[0].KeepPerVersion
	fmt.Fprintf(w, "\n== retention: %s keeps the newest %d builds of 4.2.0\n", first.Repository, keep)
	// Retention runs once per debounce window, so the oldest builds may go in different runs: what every run
	// of the repository deleted counts.
	pruned := &harborflowv1.ImagePruned{}
	want, deleted := map[string]bool{}, map[string]bool{}
	for _, level := range demoLevels[:len(demoLevels)-keep] {
		want[builds[level].GetDigest()] = true
	}
	var rolling []string
	if err := d.await(ctx, "retention pruning "+first.Repository, event.SubjectImagePruned, pruned, func() bool {
		if pruned.GetRepository() != first.Repository || pruned.GetDryRun() {
			return false
		}
		for _, a := range pruned.GetDeleted() {
			deleted[a.GetDigest()] = true
			if slices.ContainsFunc(a.GetTags(), func(t string) bool { return t == "latest" || t == "4.2.0" }) {
				rolling = append(rolling, a.GetDigest())
			}
		}
		for dg := range want {
			if !deleted[dg] {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	if len(rolling) > 0 {
		return fmt.Errorf("retention deleted %v, which a rolling tag pointed to", rolling)
	}

	fmt.Fprintf(w, "\n== harborflow history %s\n", first.Repository)
	history := newHistoryCommand(cfgPath)
	history.SetArgs([]string{first.Repository})
	history.SetOut(w)
	if err := history.ExecuteContext(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "\ndemo: every step happened")
	return nil
}

// startDemo prints every image.* stored from now on, one line each, and hands them to await.
func startDemo(ctx context.Context, w io.Writer, b *bus.Bus) *demo {
	follow, errs := make(chan *bus.Message, 256), make(chan error, 1)
	go func() {
		defer close(follow)
		for m, err := range b.Read(ctx, bus.ReadConfig{Subject: "image.>", Since: time.Now(), Follow: true}) {
			if err != nil {
				errs <- err
				return
			}
			fmt.Fprintln(w, "   "+describe(m))
			select {
			case follow <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return &demo{w: w, follow: follow, errs: errs}
}

// await waits, within ctx, for a message of subject that decodes into into and satisfies match; what it says
// it waits for names the step that did not happen.
func (d *demo) await(ctx context.Context, what, subject string, into proto.Message, match func() bool) error {
	decode := func(m *bus.Message) bool {
		if m.Subject != subject {
			return false
		}
		proto.Reset(into)
		return m.Decode(into) == nil && match()
	}
	for _, m := range d.seen {
		if decode(m) {
			return nil
		}
	}
	for {
		select {
		case m, ok := <-d.follow:
			if !ok {
				return fmt.Errorf("waiting for %s: the event stream ended", what)
			}
			d.seen = append(d.seen, m)
			if decode(m) {
				return nil
			}
		case err := <-d.errs:
			return fmt.Errorf("waiting for %s: %w", what, err)
		case <-ctx.Done():
			return fmt.Errorf("%s did not happen: %w", what, ctx.Err())
		}
	}
}

// describe is one readable line for an image.* message.
func describe(m *bus.Message) string {
	switch m.Subject {
	case event.SubjectImageInspected:
		v := &harborflowv1.ImageInspected{}
		if m.Decode(v) == nil {
			return fmt.Sprintf("inspected  %s/%s %v (update level %s, %d platforms)", v.GetRegistry(), v.GetRepository(), v.GetTags(),
				levelOf(v.UpdateLevel), len(v.GetPlatforms()))
		}
	case event.SubjectImageRebuilt:
		v := &harborflowv1.ImageRebuilt{}
		if m.Decode(v) == nil {
			line := fmt.Sprintf("rebuilt    %s:%s with %s from %s (%d ms)", v.GetTarget(), v.GetTag(), v.GetBuilder(), v.GetBase(), v.GetDurationMs())
			if v.GetProvenance() != "" {
				line += "; signed, provenance at " + v.GetProvenance()
			}
			return line
		}
	case event.SubjectImagePromoted:
		v := &harborflowv1.ImagePromoted{}
		if m.Decode(v) == nil {
			return fmt.Sprintf("promoted   %s → %s %v (%s)", v.GetFromStage(), v.GetToStage(), v.GetTags(), gateSummary(v.GetGates()))
		}
	case event.SubjectImageBlocked:
		v := &harborflowv1.ImageBlocked{}
		if m.Decode(v) == nil {
			return fmt.Sprintf("BLOCKED    %s → %s %v: %s", v.GetFromStage(), v.GetToStage(), v.GetTags(), gateSummary(v.GetGates()))
		}
	case event.SubjectImagePruned:
		v := &harborflowv1.ImagePruned{}
		if m.Decode(v) == nil {
			var parts []string
			for _, a := range v.GetDeleted() {
				parts = append(parts, fmt.Sprintf("deleted %v (%s)", a.GetTags(), a.GetReason()))
			}
			for _, a := range v.GetKept() {
				parts = append(parts, fmt.Sprintf("kept %v", a.GetTags()))
			}
			return fmt.Sprintf("pruned     %s: %s", v.GetRepository(), strings.Join(parts, "; "))
		}
	}
	return m.Subject + " " + string(m.Data)
}

func levelOf(l *int64) string {
	if l == nil {
		return "none"
	}
	return strconv.FormatInt(*l, 10)
}

// gateSummary is each gate's name and reason; a failing one in capitals.
func gateSummary(gates []*harborflowv1.Gate) string {
	var out []string
	for _, g := range gates {
		name := g.GetName()
		if !g.GetPassed() {
			name = strings.ToUpper(name)
		}
		out = append(out, name+": "+g.GetReason())
	}
	return strings.Join(out, "; ")
}

// waitReady polls url until it answers 200, within ctx.
func waitReady(ctx context.Context, url string) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		select {
		case <-ctx.Done():
			return err
		case <-deadline.C:
			return err
		case <-tick.C:
		}
	}
}
