// Header-only helpers (include/veil_sys.h); SwiftPM needs one source file per C target.
#include "veil_sys.h"
