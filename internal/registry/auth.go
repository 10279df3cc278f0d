package registry

import (
	"bufio"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// htpasswd holds bcrypt password hashes by user (Apache's htpasswd -B
// format, as the distribution registry reads it). Successful checks are
// cached so bcrypt's cost is paid once per password, not per request.
type htpasswd struct {
	users map[string][]byte

	mu sync.Mutex
	ok map[string]string // user → password that matched
}

func loadHtpasswd(path string) (*htpasswd, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	defer f.Close()
	h := &htpasswd{users: map[string][]byte{}, ok: map[string]string{}}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		user, hash, ok := strings.Cut(t, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd %s:%d: want user:hash", path, line)
		}
		if !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("htpasswd %s:%d: only bcrypt hashes are supported (htpasswd -B)", path, line)
		}
		h.users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	return h, nil
}

func (h *htpasswd) check(req *http.Request) bool {
	user, pass, ok := req.BasicAuth()
	if !ok {
		return false
	}
	hash, known := h.users[user]
	if !known {
		return false
	}
	h.mu.Lock()
	cached, hit := h.ok[user]
	h.mu.Unlock()
	if hit && subtle.ConstantTimeCompare([]byte(cached), []byte(pass)) == 1 {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	h.mu.Lock()
	h.ok[user] = pass
	h.mu.Unlock()
	return true
}

// HashPassword returns an htpasswd line for user (bcrypt), for tests and
// `berth registry htpasswd`.
func HashPassword(user, pass string) (string, error) {
	b, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	return user + ":" + string(b), nil
}
