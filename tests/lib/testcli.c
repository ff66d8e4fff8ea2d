/* testcli: see testcli.h. */
#include "lib/testcli.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/testlib.h"

evbus_client *tl_connect(const char *servers)
{
    evbus_client_options o;
    evbus_client_options_init(&o);
    o.servers = servers;
    o.timeout_ms = 15000;
    evbus_client *c = NULL;
    int rv = evbus_client_create(&o, &c);
    if (rv != 0)
        fprintf(stderr, "connect %s: %s\n", servers, evbus_strerror(rv));
    assert_int_equal(rv, 0);
    return c;
}

void tl_assert_contains(const char *hay, const char *needle, const char *file, int line)
{
    if (hay != NULL && strstr(hay, needle) != NULL)
        return;
    fprintf(stderr, "%s:%d: expected \"%s\" in:\n%s\n", file, line, needle, hay ? hay : "(null)");
    fail();
}

/*
 * Runs evbusctl with `args` (NULL-terminated), EVBUS_SERVERS=servers, and asserts its exit status.
 * `merge` adds stderr to the output. *out (may be NULL) gets the output (the caller frees).
 */
void tl_ctl_run(const char *servers, int want, char **out, bool merge, const char *const *args)
{
    const char *ctl = tl_program("EVBUSCTL");
    assert_non_null(ctl);
    const char *argv[TL_CTL_MAX_ARGS + 4];
    size_t n = 0;
    if (merge) {
        argv[n++] = "/bin/sh";
        argv[n++] = "-c";
        argv[n++] = "exec \"$0\" \"$@\" 2>&1";
    }
    argv[n++] = ctl;
    for (size_t i = 0; args[i] != NULL; i++) {
        assert_true(i < TL_CTL_MAX_ARGS);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    char env_servers[TL_ADDR_MAX * 8];
    snprintf(env_servers, sizeof(env_servers), "EVBUS_SERVERS=%s", servers);
    const char *env[] = {env_servers, NULL};
    char *text = NULL;
    int status = -1;
    int rv = tl_run_capture_env(argv, env, TL_RUN_TIMEOUT_MS, &text, &status);
    assert_int_equal(rv, 0);
    assert_non_null(text);
    if (status != want) {
        fprintf(stderr, "evbusctl");
        for (size_t i = 0; args[i] != NULL; i++)
            fprintf(stderr, " '%s'", args[i]);
        fprintf(stderr, "\nexited with %d, not %d; it printed:\n%s\n", status, want, text);
    }
    assert_int_equal(status, want);
    if (out)
        *out = text;
    else
        free(text);
}

json_t *tl_parse_json(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (j == NULL)
        fprintf(stderr, "not JSON (%s): %s\n", jerr.text, text);
    assert_non_null(j);
    return j;
}

const char *tl_str_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

json_int_t tl_int_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}
