package check

import (
	"strings"
	"testing"
)

// TestDockerfileStampsRevision: the image's `keygate version` reports the
// revision only if the build passes it with -X (VCS stamping is off in the
// image build); cmd/keygate's TestVersionLdflags proves -X main.revision
// reaches the output.
func TestDockerfileStampsRevision(t *testing.T) {
	df := string(readFile(t, deployPath("Dockerfile")))
	for _, want := range []string{"ARG REVISION", "-X main.revision=${REVISION}", "-X main.version=${VERSION}", "-buildvcs=false"} {
		if !strings.Contains(df, want) {
			t.Errorf("deploy/Dockerfile lacks %q", want)
		}
	}
}
