package memory

// heapItem is an element of a minHeap: it orders itself against another and keeps its
// position, so that heap.Fix and heap.Remove find it.
type heapItem[E any] interface {
	before(other E) bool
	heapIndex() *int
}

// minHeap is the container/heap plumbing of the store's expiry queues (bindings, stored
// messages, publications, subscriptions, nonces, known users): each element type supplies only
// its order.
type minHeap[E heapItem[E]] []E

func (h minHeap[E]) Len() int           { return len(h) }
func (h minHeap[E]) Less(i, j int) bool { return h[i].before(h[j]) }
func (h minHeap[E]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	*h[i].heapIndex(), *h[j].heapIndex() = i, j
}

func (h *minHeap[E]) Push(x any) {
	e := x.(E)
	*e.heapIndex() = len(*h)
	*h = append(*h, e)
}

func (h *minHeap[E]) Pop() any {
	old := *h
	n := len(old) - 1
	e := old[n]
	var zero E
	old[n] = zero
	*h = old[:n]
	*e.heapIndex() = -1
	return e
}
