package check

import (
	"os"
	"testing"

	"github.com/gin-gonic/gin"
)

// TestMain keeps gin's route table out of the test output: the tests start
// keygate's real router, and gin prints every route in debug mode.
func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}
