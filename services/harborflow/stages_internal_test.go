package harborflow

import (
	"slices"
	"testing"

	"github.com/harborflow/harborflow/pkg/config"
)

// The stages harborflow wires are the stages the configuration scopes sections for, in the same order: a stage
// added to one list and not the other would run with sections nobody expanded, or never run.
func TestStagesMatchConfig(t *testing.T) {
	var wired []string
	for _, d := range stages {
		wired = append(wired, d.name)
	}
	if want := config.StageNames(); !slices.Equal(wired, want) {
		t.Errorf("wired stages %v, config stages %v", wired, want)
	}
}
