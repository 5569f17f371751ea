package server

// FlowOpen reports whether this node holds the connection from source over stream transport
// tp open (UDP flows are always "open"). Delivery's flow table is the server's to read: tests
// of RFC 5626 flows outside this package ask through it.
func (s *Server) FlowOpen(tp, source string) bool { return s.delivery.FlowOpen(tp, source) }
