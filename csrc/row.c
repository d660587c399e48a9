/* Rows as values. A snapshot row is a plain table; its metatable only
 * prints it (__tostring). An each() row is a lazy row: a small userdata
 * holding its own copy of the record (addresses, tcp_info bytes, the
 * congestion name), whose fields are decoded when read (__index), by the
 * same field table as a snapshot row's (snapshot.c: tl_row_push_field).
 * Building a 16-field table per socket was most of what each() cost; a
 * loop that reads two fields of a row now pays for two.
 *
 * A lazy row reads like a table row: rec.state, rec.sport, ..., pairs(rec)
 * in the same order with the same values, tostring(rec) the same string.
 * It owns its bytes, so a row kept after its loop stays what it was. Fields
 * may be assigned (rec.note = 1, rec.state = nil) as in a table: they go to
 * a table held as the userdata's user value, made on the first assignment,
 * which reads then see first. A field decoded as a table (info) is kept
 * there too, so rec.info is one table however often it is read. */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include "records.h"

enum { ROW_MAGIC = 0x74636c72 };

typedef struct lazy_row {
    uint32_t magic;       /* ROW_MAGIC: a metamethod called on anything else raises */
    int extras;           /* user value 1 holds the table of assigned (and cached) fields */
    tl_sock_rec r;        /* its src, dst, info, cong point into this block */
    uint8_t src[16], dst[16];
    /* then r.info_len bytes of tcp_info, then r.cong_len bytes of cong */
} lazy_row;

/* Upvalues of __index, __newindex and the pairs step: the row kit (names
 * and the address cache), name -> field number, the address strings, then
 * every name tl_row_push_names pushes. */
enum { UV_KIT = 1, UV_IDS = 2, UV_ADDRS = 3, UV_NAMES = 4 };

/* Stands for "assigned nil" over a field the record has. */
static char deleted_mark;

static lazy_row *torow(lua_State *L)
{
    lazy_row *row = lua_touserdata(L, 1);
    if (!row || lua_type(L, 1) != LUA_TUSERDATA || lua_rawlen(L, 1) < sizeof *row ||
        row->magic != ROW_MAGIC)
        luaL_typeerror(L, 1, "tcplab row");
    return row;
}

void tl_lazy_row_push(lua_State *L, int mt, const tl_sock_rec *r)
{
    size_t info = r->info ? r->info_len : 0, cong = r->cong ? r->cong_len : 0;
    lazy_row *row = lua_newuserdatauv(L, sizeof *row + info + cong, 1);
    size_t alen = r->family == AF_INET ? 4 : 16;
    row->magic = ROW_MAGIC;
    row->extras = 0;
    row->r = *r;
    memcpy(row->src, r->src, alen);
    memcpy(row->dst, r->dst, alen);
    row->r.src = row->src;
    row->r.dst = row->dst;
    unsigned char *tail = (unsigned char *)(row + 1);
    if (r->info) {
        memcpy(tail, r->info, info);
        row->r.info = tail;
    }
    if (r->cong) {
        memcpy(tail + info, r->cong, cong);
        row->r.cong = (const char *)tail + info;
    }
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
}

/* The field number of the key at idx, or -1 when it names no field. */
static int field_id(lua_State *L, int idx)
{
    lua_pushvalue(L, idx);
    int id = lua_rawget(L, lua_upvalueindex(UV_IDS)) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) : -1;
    lua_pop(L, 1);
    return id;
}

/* The row's extras table pushed (made when missing). */
static void push_extras(lua_State *L, lazy_row *row)
{
    if (row->extras) {
        lua_getiuservalue(L, 1, 1);
        return;
    }
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
    row->extras = 1;
}

/* Push field id of the record (kit upvalue) and return whether it has it. */
static int push_field(lua_State *L, lazy_row *row, int id)
{
    tl_rowkit *k = lua_touserdata(L, lua_upvalueindex(UV_KIT));
    k->L = L;
    return tl_row_push_field(k, &row->r, id);
}

/* rec[key]: an assigned value first, then the record's field, decoded. */
static int lazy_index(lua_State *L)
{
    lazy_row *row = torow(L);
    if (row->extras) {
        lua_getiuservalue(L, 1, 1);
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TNIL) {
            if (lua_touserdata(L, -1) == &deleted_mark)
                lua_pushnil(L);
            return 1;
        }
        lua_settop(L, 2);
    }
    int id = field_id(L, 2);
    if (id < 0) {
        lua_pushnil(L);
        return 1;
    }
    push_field(L, row, id);
    if (lua_type(L, -1) == LUA_TTABLE) {   /* info: one table, however often read */
        push_extras(L, row);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -3);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    return 1;
}

/* rec[key] = value: kept in the extras table (nil over a field: a mark). */
static int lazy_newindex(lua_State *L)
{
    lazy_row *row = torow(L);
    lua_settop(L, 3);
    int id = field_id(L, 2);
    push_extras(L, row);
    lua_pushvalue(L, 2);
    if (lua_isnil(L, 3) && id >= 0)
        lua_pushlightuserdata(L, &deleted_mark);
    else
        lua_pushvalue(L, 3);
    lua_rawset(L, -3);   /* raises for a nil or NaN key, as a table does */
    return 0;
}

/* The step of pairs(rec): the record's fields in the order of a table
 * row's (an assigned value in place of the field's), then the other
 * assigned keys. */
static int lazy_next(lua_State *L)
{
    lazy_row *row = torow(L);
    lua_settop(L, 2);
    int nk = tl_row_nkeys(), i = 0;
    if (!lua_isnil(L, 2)) {
        int id = field_id(L, 2);
        if (id < 0)
            goto extras;
        i = id + 1;
    }
    for (; i < nk; i++) {
        lua_pushvalue(L, lua_upvalueindex(UV_NAMES + i));
        if (row->extras) {
            lua_getiuservalue(L, 1, 1);
            lua_pushvalue(L, -2);
            if (lua_rawget(L, -2) != LUA_TNIL) {
                if (lua_touserdata(L, -1) == &deleted_mark) {
                    lua_settop(L, 2);
                    continue;
                }
                lua_remove(L, -2);
                return 2;
            }
            lua_pop(L, 2);
        }
        if (push_field(L, row, i))
            return 2;
        lua_settop(L, 2);
    }
    lua_pushnil(L);
    lua_replace(L, 2);
extras:
    if (!row->extras)
        return 0;
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    while (lua_next(L, 3)) {
        if (field_id(L, -2) < 0)
            return 2;
        lua_pop(L, 1);
    }
    return 0;
}

static int lazy_pairs(lua_State *L)
{
    torow(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* tostring(row), for a table row and a lazy row alike (read through
 * lua_getfield, so both go through the same path):
 * "ESTABLISHED 127.0.0.1:41234 -> 127.0.0.1:5000", v6 in brackets. */
static int row_tostring(lua_State *L)
{
    static const char *const parts[] = {"state", "family", "src", "sport", "dst", "dport"};
    lua_settop(L, 1);
    for (int i = 0; i < 6; i++)
        lua_getfield(L, 1, parts[i]);
    const char *fam = lua_tostring(L, 3);
    int v6 = fam && strcmp(fam, "inet6") == 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < 6; i++) {
        if (i == 1)
            continue;
        if (i == 2 || i == 4)
            luaL_addstring(&b, i == 2 ? " " : " -> ");
        if ((i == 2 || i == 4) && v6)
            luaL_addchar(&b, '[');
        luaL_tolstring(L, 2 + i, NULL);
        luaL_addvalue(&b);
        if ((i == 2 || i == 4) && v6)
            luaL_addchar(&b, ']');
        if (i == 2 || i == 4)
            luaL_addchar(&b, ':');
    }
    luaL_pushresult(&b);
    return 1;
}

/* Push fn closed over the upvalues above: kit, ids and addrs at those
 * stack indices, then names [n0, n0 + nn). */
static void push_row_closure(lua_State *L, lua_CFunction fn, int kit, int ids, int addrs, int n0, int nn)
{
    lua_pushvalue(L, kit);
    lua_pushvalue(L, ids);
    lua_pushvalue(L, addrs);
    for (int i = 0; i < nn; i++)
        lua_pushvalue(L, n0 + i);
    lua_pushcclosure(L, fn, UV_NAMES - 1 + nn);
}

void tl_row_register(lua_State *L)
{
    luaL_newmetatable(L, TL_ROW_MT);
    lua_pushcfunction(L, row_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    int top = lua_gettop(L);
    luaL_newmetatable(L, TL_LAZY_ROW_MT);
    int mt = lua_gettop(L);
    tl_rowkit *k = lua_newuserdatauv(L, sizeof *k, 0);
    int kit = lua_gettop(L);
    lua_createtable(L, 0, tl_row_nkeys());
    int ids = lua_gettop(L);
    lua_createtable(L, TL_ROW_ADDR_SLOTS, 0);
    int addrs = lua_gettop(L);
    int n0 = lua_gettop(L) + 1, nn = tl_row_push_names(L);
    for (int i = 0; i < tl_row_nkeys(); i++) {
        lua_pushvalue(L, n0 + i);
        lua_pushinteger(L, i);
        lua_rawset(L, ids);
    }
    /* the names are upvalues (pseudo-indices go down: dir -1) */
    tl_row_kit(k, L, lua_upvalueindex(UV_NAMES), -1, lua_upvalueindex(UV_ADDRS));
    luaL_checkstack(L, nn + 8, "row metatable");
    push_row_closure(L, lazy_index, kit, ids, addrs, n0, nn);
    lua_setfield(L, mt, "__index");
    push_row_closure(L, lazy_newindex, kit, ids, addrs, n0, nn);
    lua_setfield(L, mt, "__newindex");
    push_row_closure(L, lazy_next, kit, ids, addrs, n0, nn);
    lua_pushcclosure(L, lazy_pairs, 1);
    lua_setfield(L, mt, "__pairs");
    lua_pushcfunction(L, row_tostring);
    lua_setfield(L, mt, "__tostring");
    lua_settop(L, top);
}
