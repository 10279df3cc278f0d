// Package stringid makes and shortens the 64-hex-digit IDs docker users know.
package stringid

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// ShortLen is how many hex digits docker shows of an ID.
const ShortLen = 12

// Generate returns a random 64-hex-digit ID. Like docker, it never returns an
// ID that is all digits, so a short ID cannot be mistaken for a number.
func Generate() string {
	b := make([]byte, 32)
	for {
		if _, err := rand.Read(b); err != nil {
			panic("stringid: no randomness: " + err.Error())
		}
		id := hex.EncodeToString(b)
		if strings.TrimLeft(id[:ShortLen], "0123456789") != "" {
			return id
		}
	}
}

// Truncate shortens an ID (with or without an algorithm prefix) to ShortLen.
func Truncate(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	if len(id) > ShortLen {
		id = id[:ShortLen]
	}
	return id
}

// IsHexPrefix reports whether s could be a (possibly short) hex ID.
func IsHexPrefix(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
