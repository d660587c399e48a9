/* core.snapshot, core.counts, core.each, core.backend: the parts (records.h) register
 * their functions and metatables into the module table on top. */
#include "records.h"

void tl_records_register(lua_State *L)
{
    tl_dump_register(L);
    tl_row_register(L);
    tl_owners_glue_register(L);
    tl_snapshot_register(L);
    tl_counts_register(L);
    tl_each_register(L);
}
