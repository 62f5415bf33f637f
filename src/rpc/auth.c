/*
 * auth.c - the server's built-in authorisation interceptor
 * (tether_server_add_auth): a bearer token from the call's metadata, or
 * the client certificate's verified subject (mTLS), checked against
 * configured sets or the application's callback.
 *
 * It is an ordinary interceptor (tether_server_add_interceptor), so it
 * runs for every codec and every method, the built-in ones too.  Tokens
 * are compared in constant time (CRYPTO_memcmp over every configured
 * token, whatever matched), and are never logged or put in an answer: a
 * refused call gets TETHER_EPERM with a fixed text.
 */
#include <openssl/crypto.h>
#include <string.h>

#include "core/alloc.h"
#include "rpc/server_int.h"

struct tt_auth {
    char **tokens;
    size_t *token_lens;
    size_t ntokens;
    char **subjects;
    size_t nsubjects;
    tether_err (*check)(const tether_call *call, const char *token, const char *subject, void *arg);
    void *check_arg;
};

#define BEARER "Bearer "

void
tt_auth_free(struct tt_auth *a)
{
    if (a == NULL) {
        return;
    }
    for (size_t i = 0; i < a->ntokens; i++) {
        /* Secrets do not outlive the server in freed memory. */
        OPENSSL_cleanse(a->tokens[i], a->token_lens[i]);
        tt_free(a->tokens[i]);
    }
    tt_free(a->tokens);
    tt_free(a->token_lens);
    for (size_t i = 0; i < a->nsubjects; i++) {
        tt_free(a->subjects[i]);
    }
    tt_free(a->subjects);
    tt_free(a);
}

static int
token_known(const struct tt_auth *a, const char *tok)
{
    size_t n = strlen(tok);
    int found = 0;
    for (size_t i = 0; i < a->ntokens; i++) {
        /* Lengths may differ without harm to secrecy: a token's length is
         * no secret worth a timing channel; its bytes are. */
        if (a->token_lens[i] == n) {
            found |= CRYPTO_memcmp(a->tokens[i], tok, n) == 0;
        }
    }
    return found;
}

static tether_err
auth_before(tether_call *call, const char **why, void *arg)
{
    const struct tt_auth *a = arg;
    const char *h = tether_call_get_meta(call, "authorization");
    const char *tok = NULL;
    if (h != NULL && strncmp(h, BEARER, sizeof BEARER - 1) == 0 && h[sizeof BEARER - 1] != '\0') {
        tok = h + sizeof BEARER - 1;
    }
    const char *subject = call->c->peer_subject;
    if (tok != NULL && token_known(a, tok)) {
        return TETHER_OK;
    }
    if (subject != NULL) {
        for (size_t i = 0; i < a->nsubjects; i++) {
            if (strcmp(a->subjects[i], subject) == 0) {
                return TETHER_OK;
            }
        }
    }
    if (a->check != NULL && a->check(call, tok, subject, a->check_arg) == TETHER_OK) {
        return TETHER_OK;
    }
    *why =
        tok != NULL ? "rpc: permission denied: the bearer token is not accepted"
        : h != NULL ? "rpc: permission denied: the authorization metadata is not \"Bearer <token>\""
        : subject != NULL ? "rpc: permission denied: the client certificate is not authorised"
                          : "rpc: permission denied: no bearer token (metadata \"authorization\")";
    return TETHER_EPERM;
}

static char *
dup_n(const char *s, size_t *len)
{
    *len = strlen(s);
    return tt_strndup(s, *len);
}

tether_err
tether_server_add_auth(tether_server *srv, const tether_auth_config *cfg)
{
    if (srv == NULL || cfg == NULL || (cfg->ntokens > 0 && cfg->tokens == NULL) ||
        (cfg->nsubjects > 0 && cfg->subjects == NULL) ||
        (cfg->ntokens == 0 && cfg->nsubjects == 0 && cfg->check == NULL)) {
        return TETHER_EINVAL;
    }
    if (srv->auth != NULL) {
        return TETHER_EEXIST;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    struct tt_auth *a = tt_calloc(1, sizeof *a);
    if (a == NULL) {
        return TETHER_ENOMEM;
    }
    a->check = cfg->check;
    a->check_arg = cfg->check_arg;
    tether_err rc = TETHER_OK;
    if (cfg->ntokens > 0) {
        a->tokens = tt_calloc(cfg->ntokens, sizeof *a->tokens);
        a->token_lens = tt_calloc(cfg->ntokens, sizeof *a->token_lens);
        rc = a->tokens != NULL && a->token_lens != NULL ? TETHER_OK : TETHER_ENOMEM;
    }
    for (size_t i = 0; rc == TETHER_OK && i < cfg->ntokens; i++) {
        if (cfg->tokens[i] == NULL || cfg->tokens[i][0] == '\0') {
            rc = TETHER_EINVAL;
        } else if ((a->tokens[i] = dup_n(cfg->tokens[i], &a->token_lens[i])) == NULL) {
            rc = TETHER_ENOMEM;
        } else {
            a->ntokens++;
        }
    }
    if (rc == TETHER_OK && cfg->nsubjects > 0) {
        a->subjects = tt_calloc(cfg->nsubjects, sizeof *a->subjects);
        rc = a->subjects != NULL ? TETHER_OK : TETHER_ENOMEM;
    }
    for (size_t i = 0; rc == TETHER_OK && i < cfg->nsubjects; i++) {
        if (cfg->subjects[i] == NULL) {
            rc = TETHER_EINVAL;
        } else if ((a->subjects[i] = tt_strdup(cfg->subjects[i])) == NULL) {
            rc = TETHER_ENOMEM;
        } else {
            a->nsubjects++;
        }
    }
    if (rc == TETHER_OK) {
        tether_server_interceptor ic = {.before = auth_before, .arg = a};
        rc = tether_server_add_interceptor(srv, &ic);
    }
    if (rc != TETHER_OK) {
        tt_auth_free(a);
        return rc;
    }
    srv->auth = a;
    return TETHER_OK;
}
