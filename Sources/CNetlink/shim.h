#ifndef CONNLOG_CNETLINK_SHIM_H
#define CONNLOG_CNETLINK_SHIM_H

// The kernel's socket diagnostics structures, which Swift's Glibc module does not carry:
// only the netlink source (Sources/ConnLog/Sources/SockDiag.swift, DestroyListener.swift) uses them.
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>

// glibc's netinet/tcp.h declares structures of the same names, and an older tcp_info without the
// byte and segment counts: the kernel's are imported under names of their own.
#define tcp_info linux_tcp_info
#define tcphdr linux_tcphdr
#define tcp_md5sig linux_tcp_md5sig
#define tcp_repair_opt linux_tcp_repair_opt
#define tcp_repair_window linux_tcp_repair_window
#define tcp_zerocopy_receive linux_tcp_zerocopy_receive
#include <linux/tcp.h>
#undef tcp_info
#undef tcphdr
#undef tcp_md5sig
#undef tcp_repair_opt
#undef tcp_repair_window
#undef tcp_zerocopy_receive

#endif
