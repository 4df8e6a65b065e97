package agent

import "errors"

// BeneathOnly makes s resolve every path with openat2 alone (root.b), as
// it does below a directory os.Root cannot open, so that a test runs its
// cases through that way too. It fails where openat2 is not available.
func BeneathOnly(s *Server) error {
	if s.root.b.dir == nil {
		return errors.New("openat2 is not available here")
	}
	if s.root.r != nil {
		if err := s.root.r.Close(); err != nil {
			return err
		}
		s.root.r = nil
	}
	return nil
}
