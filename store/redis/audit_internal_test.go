package redis

import "testing"

// keySlot must be Redis Cluster's own function: a wrong slot would put an
// outbox in another slot than its team (CROSSSLOT on Cluster, which the
// cluster conformance run would show), or, worse, spread one slot's events
// over two outboxes.
func TestKeySlot(t *testing.T) {
	for tag, want := range map[string]int{
		"123456789": 0x31C3 % clusterSlots, // the CRC16/XMODEM check value
		"foo":       12182,                 // CLUSTER KEYSLOT foo
		"":          0,
	} {
		if got := keySlot(tag); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", tag, got, want)
		}
	}
	tags := clusterSlotTags()
	if len(tags) != clusterSlots {
		t.Fatalf("%d slot tags, want %d", len(tags), clusterSlots)
	}
	for slot, tag := range tags {
		if keySlot(tag) != slot {
			t.Fatalf("slot %d's tag %q hashes to slot %d", slot, tag, keySlot(tag))
		}
	}
}
