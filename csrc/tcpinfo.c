/* struct tcp_info -> a Lua table, for a socket's own getsockopt (sock.c)
 * and for the records of a dump (records.c). One table of fields, read by
 * offset: a shorter struct from an older kernel leaves the rest out. */
#include <stdint.h>
#include <string.h>
#include <linux/tcp.h>
#include "tcplab.h"

#define TI(name, field) {name, offsetof(struct tcp_info, field), sizeof(((struct tcp_info *)0)->field)}
static const struct ti_field {
    const char *name;
    unsigned short off, size;
} ti_fields[] = {
    TI("ca_state", tcpi_ca_state), TI("retransmits", tcpi_retransmits),
    TI("probes", tcpi_probes), TI("backoff", tcpi_backoff), TI("options", tcpi_options),
    TI("rto_us", tcpi_rto), TI("ato_us", tcpi_ato), TI("snd_mss", tcpi_snd_mss),
    TI("rcv_mss", tcpi_rcv_mss), TI("unacked", tcpi_unacked), TI("sacked", tcpi_sacked),
    TI("lost", tcpi_lost), TI("retrans", tcpi_retrans), TI("fackets", tcpi_fackets),
    TI("last_data_sent_ms", tcpi_last_data_sent), TI("last_ack_sent_ms", tcpi_last_ack_sent),
    TI("last_data_recv_ms", tcpi_last_data_recv), TI("last_ack_recv_ms", tcpi_last_ack_recv),
    TI("pmtu", tcpi_pmtu), TI("rcv_ssthresh", tcpi_rcv_ssthresh), TI("rtt_us", tcpi_rtt),
    TI("rttvar_us", tcpi_rttvar), TI("snd_ssthresh", tcpi_snd_ssthresh),
    TI("snd_cwnd", tcpi_snd_cwnd), TI("advmss", tcpi_advmss), TI("reordering", tcpi_reordering),
    TI("rcv_rtt_us", tcpi_rcv_rtt), TI("rcv_space", tcpi_rcv_space),
    TI("total_retrans", tcpi_total_retrans), TI("pacing_rate", tcpi_pacing_rate),
    TI("max_pacing_rate", tcpi_max_pacing_rate), TI("bytes_acked", tcpi_bytes_acked),
    TI("bytes_received", tcpi_bytes_received), TI("segs_out", tcpi_segs_out),
    TI("segs_in", tcpi_segs_in), TI("notsent_bytes", tcpi_notsent_bytes),
    TI("min_rtt_us", tcpi_min_rtt), TI("data_segs_in", tcpi_data_segs_in),
    TI("data_segs_out", tcpi_data_segs_out), TI("delivery_rate", tcpi_delivery_rate),
    TI("busy_time_us", tcpi_busy_time), TI("rwnd_limited_us", tcpi_rwnd_limited),
    TI("sndbuf_limited_us", tcpi_sndbuf_limited), TI("delivered", tcpi_delivered),
    TI("delivered_ce", tcpi_delivered_ce), TI("bytes_sent", tcpi_bytes_sent),
    TI("bytes_retrans", tcpi_bytes_retrans), TI("dsack_dups", tcpi_dsack_dups),
    TI("reord_seen", tcpi_reord_seen), TI("rcv_ooopack", tcpi_rcv_ooopack),
    TI("snd_wnd", tcpi_snd_wnd),
};

void tl_push_tcp_info(lua_State *L, const void *info, size_t len)
{
    const unsigned char *p = info;
    size_t n = sizeof ti_fields / sizeof ti_fields[0];
    lua_createtable(L, 0, (int)n + 3);
    if (len >= 1) {
        lua_pushstring(L, p[0] < TL_STATE_MAX ? tl_state_names[p[0]] : "UNKNOWN");
        lua_setfield(L, -2, "state");
    }
    if (len > offsetof(struct tcp_info, tcpi_options) + 1) {  /* the wscale bitfields */
        unsigned char ws = p[offsetof(struct tcp_info, tcpi_options) + 1];
        lua_pushinteger(L, ws & 0x0f);
        lua_setfield(L, -2, "snd_wscale");
        lua_pushinteger(L, ws >> 4);
        lua_setfield(L, -2, "rcv_wscale");
    }
    for (size_t i = 0; i < n; i++) {
        const struct ti_field *fd = &ti_fields[i];
        if ((size_t)fd->off + fd->size > len)
            continue;
        uint64_t v;
        if (fd->size == 1) {
            v = p[fd->off];
        } else if (fd->size == 4) {
            uint32_t v32;
            memcpy(&v32, p + fd->off, 4);
            v = v32;
        } else {
            memcpy(&v, p + fd->off, 8);
        }
        if (v <= (uint64_t)LUA_MAXINTEGER)
            lua_pushinteger(L, (lua_Integer)v);
        else
            lua_pushnumber(L, (lua_Number)v);
        lua_setfield(L, -2, fd->name);
    }
}
