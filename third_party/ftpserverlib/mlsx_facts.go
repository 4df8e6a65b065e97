package ftpserver

// MLSx facts (RFC 3659 section 7): which facts MLSD and MLST entries carry,
// how FEAT announces them and how OPTS MLST selects them.
//
// (upgate fork: upstream v0.32.3 writes a fixed Type;Size;Modify and
// refuses OPTS MLST.)

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// mlsxFact is one MLSx fact; mlsxFacts lists them in the order entries and
// FEAT show them.
type mlsxFact uint32

const (
	mlsxType mlsxFact = 1 << iota
	mlsxSize
	mlsxModify
	mlsxUnixMode

	mlsxAllFacts = mlsxType | mlsxSize | mlsxModify | mlsxUnixMode
)

var mlsxFacts = []struct {
	fact mlsxFact
	name string
}{
	{mlsxType, "Type"},
	{mlsxSize, "Size"},
	{mlsxModify, "Modify"},
	{mlsxUnixMode, "UNIX.mode"},
}

// mlstFeature is the FEAT line: every fact, the selected ones starred.
func mlstFeature(selected mlsxFact) string {
	var b strings.Builder

	b.WriteString("MLST ")

	for _, f := range mlsxFacts {
		b.WriteString(f.name)

		if selected&f.fact != 0 {
			b.WriteByte('*')
		}

		b.WriteByte(';')
	}

	return b.String()
}

// parseMLSTOpts reads the argument of OPTS MLST ("type;size;"), ignoring
// facts it does not know and case, as RFC 3659 7.9 asks.
func parseMLSTOpts(arg string) mlsxFact {
	var selected mlsxFact

	for _, name := range strings.Split(arg, ";") {
		for _, f := range mlsxFacts {
			if strings.EqualFold(strings.TrimSpace(name), f.name) {
				selected |= f.fact
			}
		}
	}

	return selected
}

// mlsxFactNames is the reply to OPTS MLST: the selected facts, each
// followed by ";".
func mlsxFactNames(selected mlsxFact) string {
	var b strings.Builder

	for _, f := range mlsxFacts {
		if selected&f.fact != 0 {
			b.WriteString(f.name)
			b.WriteByte(';')
		}
	}

	return b.String()
}

// unixMode is the UNIX.mode fact: permission bits plus setuid, setgid and
// sticky, in octal as ls and chmod show them ("0644").
func unixMode(mode os.FileMode) string {
	bits := uint32(mode.Perm())

	if mode&os.ModeSetuid != 0 {
		bits |= 0o4000
	}

	if mode&os.ModeSetgid != 0 {
		bits |= 0o2000
	}

	if mode&os.ModeSticky != 0 {
		bits |= 0o1000
	}

	return fmt.Sprintf("%04o", bits)
}

// handleOptsMLST selects the facts MLSD and MLST entries carry from now on.
func (c *clientHandler) handleOptsMLST(args []string) error {
	var selected mlsxFact
	if len(args) > 0 {
		selected = parseMLSTOpts(args[0])
	}

	c.mlsxSelected.Store(uint32(selected))

	if names := mlsxFactNames(selected); names != "" {
		c.writeMessage(StatusOK, "MLST OPTS "+names)
	} else {
		c.writeMessage(StatusOK, "MLST OPTS")
	}

	return nil
}

// writeMLSxEntry writes one MLSD line or MLST entry: the selected facts,
// a space and name.
func (c *clientHandler) writeMLSxEntry(writer io.Writer, file os.FileInfo, name string) error {
	selected := mlsxFact(c.mlsxSelected.Load())

	var b strings.Builder

	if selected&mlsxType != 0 {
		switch {
		case file.IsDir():
			b.WriteString("Type=dir;")
		case file.Mode()&os.ModeSymlink != 0:
			// RFC 3659 7.5.1's form, which lftp, proftpd and basic-ftp
			// read as a link (upgate fork).
			b.WriteString("Type=OS.unix=symlink;")
		default:
			b.WriteString("Type=file;")
		}
	}

	if selected&mlsxSize != 0 {
		fmt.Fprintf(&b, "Size=%d;", file.Size())
	}

	if selected&mlsxModify != 0 {
		b.WriteString("Modify=" + file.ModTime().UTC().Format(dateFormatMLSD) + ";")
	}

	if selected&mlsxUnixMode != 0 {
		b.WriteString("UNIX.mode=" + unixMode(file.Mode()) + ";")
	}

	b.WriteString(" " + name + "\r\n")

	if _, err := io.WriteString(writer, b.String()); err != nil {
		return fmt.Errorf("error writing MLSD entry: %w", err)
	}

	return nil
}
