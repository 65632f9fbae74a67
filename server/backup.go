package server

// GET /v1/store/backup: an online, consistent copy of the embedded store
// for `keygate store backup` (README, "Backup and restore"). Restoring is
// copying the file into a data directory as keygate.db and starting keygate
// with the same master key. A store without the capability (Redis) answers
// 404: it is backed up with its own tools.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/verify"
)

// backupStore is a store that copies itself whole, as of one moment, while
// keygate runs (store/bolt). The copy holds size bytes; the caller closes
// it.
type backupStore interface {
	Backup(ctx context.Context) (r io.ReadCloser, size int64, err error)
	// BackupSize is the size of a backup taken now, without taking it
	// (for HEAD).
	BackupSize(ctx context.Context) (int64, error)
}

const (
	// backupWriteIdle is how long one write of a backup may wait for the
	// client. The server's write timeout (30 s, cmd/keygate/serve.go)
	// bounds a whole answer, which a large store cannot meet; a backup
	// moves its deadline forward at each write instead, so it runs as long
	// as the client keeps reading, and a client that stops is cut off.
	backupWriteIdle = time.Minute
	// backupChunk is how much one write sends.
	backupChunk = 256 << 10
)

func (s *Server) storeBackup(c *gin.Context) {
	bs, ok := store.Feature[backupStore](s.store)
	if !ok {
		problem(c, http.StatusNotFound, problemNotFound,
			"this keygate's store has no online backup (only the embedded store has); back the store up with its own tools, as the README's \"Backup and restore\" describes for Redis")
		return
	}
	// The copy holds every team's keys: only an admin key's token, never a
	// token of a team key that some day holds keys:admin through another
	// route, may take it.
	if claims, _ := c.Value(claimsKey).(*verify.Claims); claims == nil || claims.TeamID != "" {
		problem(c, http.StatusForbidden, problemForbidden, "only an admin key's token may take a backup of the store")
		return
	}
	ctx := c.Request.Context()
	if c.Request.Method == http.MethodHead {
		// The headers of the answer GET would give, without a copy: no data
		// leaves, so nothing is recorded either.
		size, err := bs.BackupSize(ctx)
		if err != nil {
			s.storeProblem(c, fmt.Errorf("store backup: %w", err))
			return
		}
		setBackupHeaders(c, size)
		c.Status(http.StatusOK)
		return
	}
	if err := s.keys.StoreBackedUp(ctx, s.requestMeta(c)); err != nil {
		s.storeProblem(c, err)
		return
	}
	r, size, err := bs.Backup(ctx)
	if err != nil {
		s.storeProblem(c, fmt.Errorf("store backup: %w", err))
		return
	}
	defer r.Close()

	rc := http.NewResponseController(c.Writer)
	w := &deadlineWriter{w: c.Writer, rc: rc}
	if err := rc.SetWriteDeadline(time.Now().Add(backupWriteIdle)); err != nil {
		// Without the deadline the server's write timeout cuts a large
		// backup short: the client sees fewer bytes than Content-Length.
		s.reqLog(c).Warn("store backup: cannot extend the write deadline; a backup that takes longer than the server's write timeout will be cut off", "err", err)
		w.rc = nil
	}
	setBackupHeaders(c, size)
	c.Status(http.StatusOK)
	// Hide the spool's WriteTo so that every write is one chunk, each with
	// its own deadline.
	n, err := io.CopyBuffer(w, struct{ io.Reader }{r}, make([]byte, backupChunk))
	if err != nil || n != size {
		// The status is sent; the client learns of the failure from a body
		// shorter than Content-Length.
		s.reqLog(c).Warn("store backup: not sent whole", "sent", n, "size", size, "err", errors.Join(err, ctx.Err()))
		return
	}
	s.reqLog(c).Info("store backup sent", "size", size)
}

func setBackupHeaders(c *gin.Context, size int64) {
	h := c.Writer.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Content-Disposition", `attachment; filename="keygate-backup.db"`)
	h.Set("X-Content-Type-Options", "nosniff")
}

// deadlineWriter moves the connection's write deadline backupWriteIdle
// ahead before each write (rc nil: it cannot).
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if d.rc != nil {
		if err := d.rc.SetWriteDeadline(time.Now().Add(backupWriteIdle)); err != nil {
			return 0, err
		}
	}
	return d.w.Write(p)
}
