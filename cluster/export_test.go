package cluster

// StopReader stops this node's inbox reader as a lost connection to Redis would, and
// StartReader starts it again from the last entry it read.
func (c *Cluster) StopReader() { c.stopReader() }

func (c *Cluster) StartReader() {
	c.mu.Lock()
	ctx := c.runCtx
	c.mu.Unlock()
	c.startReader(ctx)
}
