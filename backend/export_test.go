package backend

import "github.com/spf13/afero"

// Fetches is how many read-ahead blocks f, a GRPCFs file, has asked the
// agent for.
func Fetches(f afero.File) uint64 { return f.(*file).fetches.Load() }

// Chunk is the size of a read-ahead block.
const Chunk = chunk
