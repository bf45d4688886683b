// Exits 0 when AMX tiles work on this machine: asks the kernel for the tile-data state
// (Linux's ARCH_REQ_XCOMP_PERM), loads a tile configuration and zeroes a tile. Some hosts
// list amx_tile in /proc/cpuinfo yet fault at ldtilecfg (seen under a hypervisor); a
// llama.cpp built for them with AMX crashes in every matmul. Used by build_llamacpp.sh.
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int main(void) {
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 1;
  unsigned char cfg[64];
  memset(cfg, 0, sizeof cfg);
  cfg[0] = 1;    // palette 1
  cfg[16] = 64;  // tile 0: 64 bytes per row
  cfg[48] = 16;  // tile 0: 16 rows
  _tile_loadconfig(cfg);
  _tile_zero(0);
  _tile_release();
  return 0;
}
