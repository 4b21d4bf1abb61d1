/*
 * hato: the broker daemon. Command line as mosquitto's: -c FILE, -p PORT,
 * -v, -d, -h, --test-config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "broker/broker.h"
#include "config/features.h"
#include "broker/privdrop.h"
#include "broker/reload.h"
#include "broker/tls.h"

static void usage(FILE *f) {
    fprintf(f,
            "hato version %s\n\n"
            "hato is an MQTT 5.0/3.1.1/3.1 broker.\n\n"
            "Usage: hato [-c config_file] [-d] [-h] [-p port] [-v] [--test-config]\n"
            "            [--list-directives]\n\n"
            " -c : read configuration from a file (mosquitto.conf syntax).\n"
            "      With no file: listen on loopback port 1883 only, anonymous allowed.\n"
            " -d : put the broker into the background after starting.\n"
            " -h : display this help.\n"
            " -p : start the broker listening on the specified port (0 = any free port).\n"
            " -v : verbose mode - enable all logging types.\n"
            " --test-config : check the configuration file and exit.\n"
            " --list-directives : print every directive hato reads (Markdown) and exit.\n\n"
            "Built with: %s.\n"
            "See hato(8) and hato.conf(5).\n",
            HATO_VERSION, hato_features());
}

static int parse_port(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 0 || v > 65535)
        return -1;
    return (int)v;
}

int main(int argc, char **argv) {
    const char *config = NULL;
    int ports[16];
    int nports = 0;
    bool verbose = false, daemonize = false, test_config = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") || !strcmp(a, "--config-file")) {
            if (++i == argc) {
                fprintf(stderr, "Error: -c argument given, but no config file specified.\n");
                return 1;
            }
            config = argv[i];
        } else if (!strcmp(a, "-p") || !strcmp(a, "--port")) {
            if (++i == argc) {
                fprintf(stderr, "Error: -p argument given, but no port specified.\n");
                return 1;
            }
            int p = parse_port(argv[i]);
            if (p < 0) {
                fprintf(stderr, "Error: invalid port '%s' (expected 0..65535).\n", argv[i]);
                return 1;
            }
            if (nports == (int)(sizeof(ports) / sizeof(ports[0]))) {
                fprintf(stderr, "Error: too many -p options.\n");
                return 1;
            }
            ports[nports++] = p;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "-d") || !strcmp(a, "--daemon")) {
            daemonize = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--test-config")) {
            test_config = true;
        } else if (!strcmp(a, "--list-directives")) {
            hato_directives_print(stdout);
            return 0;
        } else {
            fprintf(stderr, "Error: unknown option '%s'.\n", a);
            usage(stderr);
            return 1;
        }
    }

    struct hato_config cfg;
    hato_config_init(&cfg);
    char err[512];
    if (config && hato_config_load(&cfg, config, err, sizeof(err)) < 0) {
        fprintf(stderr, "Error: %s\n", err);
        hato_config_free(&cfg);
        return 1;
    }
    for (int i = 0; i < nports; i++) {
        if (hato_config_set_port(&cfg, ports[i]) < 0) {
            fprintf(stderr, "Error: cannot use port %d.\n", ports[i]);
            hato_config_free(&cfg);
            return 1;
        }
    }
    if (hato_config_finish(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "Error: %s\n", err);
        hato_config_free(&cfg);
        return 1;
    }
    if (test_config) {
        /* Certificates and keys are checked too: they are part of the set-up. */
        if (tls_check_config(&cfg) < 0) {
            hato_config_free(&cfg);
            return 1;
        }
        for (size_t i = 0; i < cfg.n_warnings; i++)
            printf("Warning: %s\n", cfg.warnings[i]);
        printf("Configuration file is OK.\n");
        hato_config_free(&cfg);
        return 0;
    }
    privdrop_survey(&cfg); /* before the log file and the store are created */
    if (hato_config_apply_logging(&cfg) < 0) {
        hato_config_free(&cfg);
        return 1;
    }
    for (size_t i = 0; i < cfg.n_warnings; i++)
        log_warn("Warning: %s", cfg.warnings[i]);
    if (verbose)
        log_set_mask(LOG_ALL);
    if (cfg.local_only)
        log_notice("Starting in local only mode. Connections will only be possible from clients "
                   "running on this machine.");
    if (config)
        log_notice("Config loaded from %s.", config);

    struct broker b;
    int rc = 1;
    if (broker_init(&b, &cfg) < 0) {
        log_error("Error: start-up failed.");
        broker_free(&b);
        hato_config_free(&cfg);
        return 1;
    }
    broker_set_config_source(&b, config, verbose); /* what SIGHUP re-reads */
    if (daemonize && daemon(1, 0) < 0) {
        log_error("Error: cannot daemonize: %s", strerror(errno));
        broker_free(&b);
        hato_config_free(&cfg);
        return 1;
    }
    FILE *pf = NULL;
    if (cfg.pid_file && (pf = fopen(cfg.pid_file, "w"))) {
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
    } else if (cfg.pid_file) {
        log_error("Error: cannot write pid file %s: %s", cfg.pid_file, strerror(errno));
        broker_free(&b);
        hato_config_free(&cfg);
        return 1;
    }
    rc = broker_run(&b);
    broker_free(&b);
    if (cfg.pid_file)
        unlink(cfg.pid_file);
    hato_config_free(&cfg);
    log_shutdown();
    return rc;
}
