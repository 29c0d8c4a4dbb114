/* Wine 8.0 (Debian 12) has no bcryptprimitives.dll, whose ProcessPrng Rust's std
 * (1.78 and later) imports on Windows: without it no Rust program starts under that
 * Wine. scripts/test-windows.sh builds this stand-in into the Wine prefix only; a real
 * Windows (10 and later) ships the DLL. It fills the buffer from the system RNG. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
