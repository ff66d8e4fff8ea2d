/* Unit tests of config/: defaults, flags, file, environment, precedence and errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "evbus/errors.h"
#include "lib/testlib.h"

static void test_defaults(void **state)
{
    (void)state;
    config c;
    config_defaults(&c);
    assert_int_equal(c.node_id, 1);
    assert_string_equal(c.listen, "127.0.0.1:7070");
    assert_string_equal(c.raft_listen, "127.0.0.1:7071");
    assert_string_equal(c.data_dir, "./evbus-data");
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.max_frame_bytes, 4u << 20);
    assert_int_equal(c.default_partitions, 4);
    assert_int_equal(c.max_rules_per_bus, 300);
    assert_int_equal(c.max_pattern_bytes, 4096);
}

static int parse(config *c, char *err, size_t err_len, char **envp, int argc, ...)
{
    char *argv[32] = {"evbusd"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 1; i <= argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    return config_parse(c, argc + 1, argv, envp, err, err_len);
}

static void test_flags(void **state)
{
    (void)state;
    config c;
    char err[512];
    char *env[] = {NULL};
    assert_int_equal(parse(&c, err, sizeof(err), env, 5, "--node-id", "3",
                           "--listen=127.0.0.1:9000", "--log-level", "debug"),
                     0);
    assert_int_equal(c.node_id, 3);
    assert_string_equal(c.listen, "127.0.0.1:9000");
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(
        parse(&c, err, sizeof(err), env, 3, "--max-rules-per-bus", "3", "--max-pattern-bytes=100"),
        0);
    assert_int_equal(c.max_rules_per_bus, 3);
    assert_int_equal(c.max_pattern_bytes, 100);
    /* Beyond what a snapshot's 16-bit repeated count allows per bus. */
    assert_int_equal(parse(&c, err, sizeof(err), env, 2, "--max-rules-per-bus", "10001"),
                     EVBUS_EINVAL);
    assert_non_null(strstr(err, "max-rules-per-bus"));
}

static void test_errors(void **state)
{
    (void)state;
    config c;
    char err[512];
    char *env[] = {NULL};
    assert_int_equal(parse(&c, err, sizeof(err), env, 2, "--no-such-key", "1"), EVBUS_EINVAL);
    assert_non_null(strstr(err, "unknown config key 'no-such-key'"));
    assert_int_equal(parse(&c, err, sizeof(err), env, 2, "--node-id", "0"), EVBUS_EINVAL);
    assert_non_null(strstr(err, "node-id"));
    assert_int_equal(parse(&c, err, sizeof(err), env, 2, "--node-id", "12abc"), EVBUS_EINVAL);
    assert_int_equal(parse(&c, err, sizeof(err), env, 2, "--listen", "nohost"), EVBUS_EINVAL);
    assert_non_null(strstr(err, "host:port"));
    assert_int_equal(parse(&c, err, sizeof(err), env, 2, "--listen", "127.0.0.1:70000"),
                     EVBUS_EINVAL);
    assert_int_equal(parse(&c, err, sizeof(err), env, 2, "--log-level", "loud"), EVBUS_EINVAL);
    assert_int_equal(parse(&c, err, sizeof(err), env, 1, "--node-id"), EVBUS_EINVAL);
    assert_non_null(strstr(err, "needs a value"));
    assert_int_equal(parse(&c, err, sizeof(err), env, 1, "stray"), EVBUS_EINVAL);
    assert_int_equal(parse(&c, err, sizeof(err), env, 2, "--raft-listen", "127.0.0.1:7070"),
                     EVBUS_EINVAL);
}

static void test_file_env_precedence(void **state)
{
    (void)state;
    char path[TL_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/evbus.conf", tl_tmpdir());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# comment\n\nnode-id = 7\nregion eu-test   # trailing comment\n"
               "listen = 127.0.0.1:8001\n");
    fclose(f);
    config c;
    char err[512];
    char cfgarg[TL_PATH_MAX + 64];
    snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
    char *env[] = {"EVBUS_NODE_ID=8", "EVBUS_SERVERS=ignored:1", "EVBUS_UNRELATED_TEST_VAR=x",
                   "HOME=/root", NULL};
    /* file < env < flag */
    assert_int_equal(parse(&c, err, sizeof(err), env, 3, cfgarg, "--listen", "127.0.0.1:8002"), 0);
    assert_int_equal(c.node_id, 8);
    assert_string_equal(c.region, "eu-test");
    assert_string_equal(c.listen, "127.0.0.1:8002");

    char *bad_env[] = {"EVBUS_NODE_ID=zero", NULL};
    assert_int_equal(parse(&c, err, sizeof(err), bad_env, 0), EVBUS_EINVAL);
    assert_non_null(strstr(err, "EVBUS_NODE_ID"));

    f = fopen(path, "w");
    fprintf(f, "node-id = 2\nbogus-key = 1\n");
    fclose(f);
    char *env0[] = {NULL};
    assert_int_equal(parse(&c, err, sizeof(err), env0, 1, cfgarg), EVBUS_EINVAL);
    assert_non_null(strstr(err, ":2: unknown config key 'bogus-key'"));

    assert_int_equal(parse(&c, err, sizeof(err), env0, 2, "--config", "/nonexistent/evbus.conf"),
                     EVBUS_EINVAL);
    assert_non_null(strstr(err, "cannot open config file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_file_env_precedence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
