package server

// CloseAll closes what New opened, for a test (package server_test) that builds a server
// without starting it.
func CloseAll(s *Server) { s.closeAll() }
