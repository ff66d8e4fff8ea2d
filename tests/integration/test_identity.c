/*
 * Integration: a data directory belongs to one node of one cluster. evbusd
 * refuses, with a clear message and a non-zero exit, to start on a directory of
 * another node id, of another cluster (another bootstrap list), or whose
 * RocksDB is corrupt; and an unknown flag or bad value stops it with exit 2.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evbus/evbus.h"
#include "lib/testlib.h"
#include "lib/testsdk.h"

/* Runs evbusd to its end (it must refuse quickly) and returns its exit status; the log text is
 * checked for `want`. */
static int run_refused(const char *const *argv, const char *want)
{
    char log[TL_PATH_MAX + 32];
    static int n;
    snprintf(log, sizeof(log), "%s/refused-%d.log", tl_tmpdir(), n++);
    tl_proc p;
    assert_int_equal(tl_spawn(&p, argv, NULL, log), 0);
    int st = tl_proc_wait(&p, 15000);
    if (st < 0)
        st = tl_proc_stop(&p, SIGKILL, 5000);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char buf[8192];
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    buf[len] = '\0';
    fclose(f);
    if (strstr(buf, want) == NULL) {
        fprintf(stderr, "expected '%s' in:\n%s\n", want, buf);
        fail();
    }
    return st;
}

static void test_refuses_foreign_data_dir(void **state)
{
    (void)state;
    tl_node n;
    assert_int_equal(tl_node_init(&n, 1), 0);
    char boot[256];
    snprintf(boot, sizeof(boot), "1=%s/%s", n.raft_addr, n.client_addr);
    const char *args[] = {"--bootstrap", boot, NULL};
    assert_int_equal(tl_evbusd_start(&n, args, 0), 0);
    assert_int_equal(tl_wait_leader(n.client_addr, 20000, NULL), 0);
    evbus_client_options o;
    evbus_client_options_init(&o);
    o.servers = n.client_addr;
    evbus_client *c = NULL;
    assert_int_equal(evbus_client_create(&o, &c), 0);
    assert_int_equal(evbus_bus_create(c, "kept", 1), 0);
    evbus_client_destroy(c);
    assert_int_equal(tl_evbusd_stop(&n, SIGTERM, 0), 0);

    const char *evbusd = tl_program("EVBUSD");
    assert_non_null(evbusd);
    /* Another node id on this directory. */
    const char *other_id[] = {evbusd,          "--node-id", "2",          "--listen", n.client_addr,
                              "--raft-listen", n.raft_addr, "--data-dir", n.data_dir, NULL};
    assert_int_equal(run_refused(other_id, "belongs to node 1, not node 2"), 1);
    /* Another cluster: a different bootstrap list. */
    char other_boot[300];
    snprintf(other_boot, sizeof(other_boot), "1=%s/%s,2=127.0.0.1:1/127.0.0.1:2", n.raft_addr,
             n.client_addr);
    const char *other_cluster[] = {evbusd,        "--node-id",     "1",         "--listen",
                                   n.client_addr, "--raft-listen", n.raft_addr, "--data-dir",
                                   n.data_dir,    "--bootstrap",   other_boot,  NULL};
    assert_int_equal(run_refused(other_cluster, "created for another cluster"), 1);
    /* Bad flags never touch the data. */
    const char *bad_flag[] = {evbusd, "--no-such-flag", "1", NULL};
    assert_int_equal(run_refused(bad_flag, "unknown config key 'no-such-flag'"), 2);
    const char *bad_value[] = {evbusd, "--node-id", "zero", NULL};
    assert_int_equal(run_refused(bad_value, "bad value for node-id"), 2);

    /* The directory is intact: the right node still starts and has its bus. */
    assert_int_equal(tl_evbusd_start(&n, args, 0), 0);
    assert_int_equal(tl_wait_leader(n.client_addr, 20000, NULL), 0);
    c = NULL;
    assert_int_equal(evbus_client_create(&o, &c), 0);
    evbus_bus_info *info = NULL;
    assert_int_equal(evbus_bus_describe(c, "kept", &info), 0);
    evbus_bus_info_free(info);
    evbus_client_destroy(c);
    assert_int_equal(tl_evbusd_stop(&n, SIGTERM, 0), 0);

    /* A corrupt RocksDB: its CURRENT file names a manifest that does not exist. */
    char current[TL_PATH_MAX + 32];
    snprintf(current, sizeof(current), "%s/rocksdb/CURRENT", n.data_dir);
    FILE *f = fopen(current, "w");
    assert_non_null(f);
    fputs("MANIFEST-999999\n", f);
    fclose(f);
    const char *corrupt[] = {evbusd,          "--node-id", "1",          "--listen", n.client_addr,
                             "--raft-listen", n.raft_addr, "--data-dir", n.data_dir, NULL};
    assert_int_equal(run_refused(corrupt, "cannot open"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refuses_foreign_data_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
