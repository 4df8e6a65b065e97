package ftpserver

// EPSV ALL (RFC 2428 section 4): after it, EPSV is the only command that
// sets up data connections (upgate fork: upstream answered EPSV ALL with
// a 229 and a passive port, and PASV, PORT and EPRT kept working).

import (
	"fmt"
	"strings"
)

// handleEPSV answers EPSV ALL with 200, as vsftpd does, and any other EPSV
// as PASV.
func (c *clientHandler) handleEPSV(param string) error {
	if strings.EqualFold(strings.TrimSpace(param), "ALL") {
		c.epsvAll.Store(true)
		c.writeMessage(StatusOK, "EPSV ALL ok.")

		return nil
	}

	return c.handlePASV(param)
}

// refusedAfterEPSVAll answers a data connection command other than EPSV
// after EPSV ALL with 550, as vsftpd does.
func (c *clientHandler) refusedAfterEPSVAll() bool {
	if !c.epsvAll.Load() {
		return false
	}

	c.writeMessage(StatusActionNotTaken, fmt.Sprintf("%s is not allowed after EPSV ALL", c.GetLastCommand()))

	return true
}

func (c *clientHandler) handlePASVUnlessEPSVAll(param string) error {
	if c.refusedAfterEPSVAll() {
		return nil
	}

	return c.handlePASV(param)
}

func (c *clientHandler) handlePORTUnlessEPSVAll(param string) error {
	if c.refusedAfterEPSVAll() {
		return nil
	}

	return c.handlePORT(param)
}
