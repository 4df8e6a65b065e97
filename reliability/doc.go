// Package reliability holds the reliability suite of issue 8 as tests
// (package reliability_test):
//
//   - TestLoad: 1,000 concurrent FTP and SFTP connections, 200 of them
//     uploading, with every file checked and every resource back at its
//     baseline afterwards; TestSmallUploadMemory;
//   - agent faults: an agent process killed mid-upload and restarted, a
//     full disk;
//   - gateway faults: the gateway process killed (SIGKILL) or frozen
//     (SIGSTOP) mid-upload.
//
// The tests that build the upgate binary, mount a tmpfs or run for a
// minute are skipped under -short. docs/benchmarks-load.md has the figures
// they measured and the commands.
package reliability
