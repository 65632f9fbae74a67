package verify

// CacheLen is how many verified tokens v remembers (tests only).
func CacheLen(v *Verifier) int {
	if v.cache == nil {
		return 0
	}
	return v.cache.len()
}
