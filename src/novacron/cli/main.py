"""``novacron``: the command-line client of the NovaCron REST API."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from novacron import __version__
from novacron.cli import formats, tables
from novacron.cli.client import CliError, config_path
from novacron.cli.common import JSON, State, client_of, state_of
from novacron.cli.output import info, print_detail, print_error, use_utc
from novacron.cli.security import app as security_app  # small: typer only, no deferral needed


class NovaGroup(TyperGroup):
    """Turns every ``CliError`` of any subcommand into a readable message and an exit code; gives every
    command that prints data ``-f/--format`` (cli/formats.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        formats.install(self)

    def invoke(self, ctx: ClickContext) -> Any:
        tables.set_format(None)  # the format of this invocation only (tests run several in one process)
        try:
            return super().invoke(ctx)
        except CliError as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        finally:
            state = ctx.obj
            if isinstance(state, State):
                state.close()


CA_FILE = typer.Option(
    None,
    "--ca-file",
    metavar="PEM",
    help="CA certificate to verify the server's HTTPS with (default: NOVACRON_CA_FILE, the one stored "
    "by login, the local node's platform CA for a server on this machine, then the system's CAs)",
)

app = typer.Typer(
    cls=NovaGroup,
    no_args_is_help=True,
    # --install-completion / --show-completion for bash, zsh, fish and PowerShell (typer's)
    add_completion=True,
    pretty_exceptions_enable=False,
    help="NovaCron: manage virtual machines, images, flavors, tasks, hosts and events over the REST API.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"novacron {__version__}")
        raise typer.Exit


@app.callback()
def main(
    ctx: typer.Context,
    server: str | None = typer.Option(
        None,
        "--server",
        "-s",
        metavar="URL",
        help="API base URL (default: NOVACRON_URL, then the one stored by login, then https://127.0.0.1:8080)",
    ),
    ca_file: str | None = CA_FILE,
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, callback=_print_version, help="print the version and exit"
    ),
    utc: bool = typer.Option(
        False, "--utc", help="print times in UTC (default: local time, from TZ, labelled with its zone)"
    ),
) -> None:
    ctx.obj = State(server=server, ca_file=ca_file)
    use_utc(utc)


@app.command()
def login(
    ctx: typer.Context,
    server: str | None = typer.Option(None, "--server", "-s", metavar="URL", help="API base URL to log into"),
    username: str = typer.Option(
        "admin", "--username", "-u", help="your username; a tenant user may write it name@tenant"
    ),
    tenant: str | None = typer.Option(
        None,
        "--tenant",
        "-t",
        help="your tenant (name or id); needed unless you are a platform user or in tenant 'default'",
    ),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin"),
    otp: str | None = typer.Option(
        None, "--otp", help="the code of your authenticator app (or a recovery code); asked for when needed"
    ),
    ca_file: str | None = CA_FILE,
    sso: bool = typer.Option(False, "--sso", help="sign in at your tenant's identity provider (device code)"),
    provider: str | None = typer.Option(None, "--provider", help="with --sso: which provider (if several)"),
) -> None:
    """Log in and store the server URL, its CA file and the tokens (mode 0600) for the next commands.

    ``--sso``: sign in at the tenant's identity provider instead of with a password; the command
    prints a URL and a code to enter there, in any browser, and waits.

    Users of a tenant other than ``default`` name it: ``--tenant acme`` or ``-u bob@acme``. A user
    with a second factor is asked for a code after the password (or gives it with ``--otp``)."""
    state = state_of(ctx)
    if server:
        state.server = server
    if ca_file:
        state.ca_file = ca_file
    client = state.client()
    if sso:
        from novacron.cli.sso import device_login

        device_login(client, tenant or "default", provider)
        return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(f"Password for {username} on {client.server}", hide_input=True)
    if not password:
        raise CliError("empty password")
    grant = {"username": username, "password": password, **({"tenant": tenant} if tenant else {})}
    tokens = client.send("POST", "/v1/tokens", json_body=grant, auth=False).json()
    if tokens.get("mfa_required"):  # a second factor: the password step answered a challenge
        code = otp or typer.prompt("Code from your authenticator app (or a recovery code)")
        step = {"mfa_token": tokens["mfa_token"], "code": code.strip()}
        tokens = client.send("POST", "/v1/tokens/mfa", json_body=step, auth=False).json()
    path = client.store_tokens(tokens, username)
    info(f"[green]Logged in to {client.server} as {username}.[/] Credentials saved in {path}")


@app.command()
def logout(ctx: typer.Context) -> None:
    """Revoke the current token on the server and forget the stored tokens."""
    client = client_of(ctx)
    if client.token:
        try:
            client.send("DELETE", "/v1/tokens/current")
        except CliError as exc:
            info(f"[yellow]The server did not revoke the token: {exc.message}[/]")
    client.creds.access_token = client.creds.refresh_token = ""
    client.creds.save(client.credentials_path)
    info(f"Logged out; tokens removed from {config_path()}")


@app.command()
def whoami(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Show who the current token belongs to."""
    print_detail(client_of(ctx).get("/v1/tokens/current"), as_json=as_json)


def _register() -> None:
    from novacron.cli import (
        agent,
        apikey,
        audit,
        autoscale,
        backup,
        clone,
        cluster,
        cost,
        dr,
        image,
        kek,
        lb,
        listings,
        mfa,
        misc,
        network,
        quota,
        scaling,
        slo,
        vm,
        vm_snapshot,  # noqa: F401 (registers its commands on the vm sub-app)
        volume,
        webhook,
    )

    app.add_typer(audit.app, name="audit", help="The audit log: verify its hash chain, checkpoints, export.")
    app.add_typer(security_app, name="security", help="Threat detection: blocked addresses, lifting a block.")
    app.add_typer(mfa.app, name="mfa", help="Your second factor (TOTP), step-up, tenants' MFA policy.")
    app.add_typer(vm.app, name="vm", help="Virtual machines: create, power actions, console, logs, metrics.")
    app.add_typer(volume.app, name="volume", help="Volumes: create, attach and detach (hot-plug), extend.")
    app.add_typer(image.app, name="image", help="Disk images: import from a file or URL, list, delete.")
    app.add_typer(misc.flavor_app, name="flavor", help="VM sizes.")
    app.add_typer(misc.task_app, name="task", help="Durable tasks: list, show, watch.")
    app.add_typer(misc.host_app, name="host", help="Hypervisor hosts.")
    app.add_typer(cluster.app, name="cluster", help="The cluster as a whole: rebalance.")
    app.add_typer(
        backup.app, name="backup", help="VM backups: create, list, restore, verify, holds, policies."
    )
    assert clone.registered  # its commands join the ``vm`` and ``image`` apps on import
    assert dr.failover is not None  # its commands join the ``dr`` app on import
    app.add_typer(
        backup.dr_app, name="dr", help="Disaster recovery: runbooks, drills, failover, fail-back, RPO/RTO."
    )
    app.command(name="restore")(backup.restore)
    app.add_typer(quota.quota_app, name="quota", help="Quota tree: show and set limits, reconcile.")
    app.add_typer(quota.reservation_app, name="reservation", help="Capacity bookings for a time window.")
    app.add_typer(quota.usage_app, name="usage", help="Metered consumption and cost: report, meter.")
    app.add_typer(quota.budget_app, name="budget", help="Monthly budgets of tenants and projects.")
    app.add_typer(quota.price_app, name="price", help="Price list per resource and hour.")
    app.add_typer(quota.policy_app, name="policy", help="Policy rules: thresholds, bursts, size caps.")
    app.add_typer(cost.cost_app, name="cost", help="What VMs cost (and on the clouds), rightsizing, ROI.")
    app.add_typer(cost.capacity_app, name="capacity", help="When the cluster runs out: forecast, what-if.")
    app.add_typer(network.network_app, name="network", help="Tenant networks (VXLAN segments).")
    app.add_typer(network.subnet_app, name="subnet", help="Subnets: address ranges, gateway, DHCP.")
    app.add_typer(network.port_app, name="port", help="Ports: NICs with addresses and rules.")
    app.add_typer(network.router_app, name="router", help="Routers: interfaces, external gateway (SNAT).")
    app.add_typer(network.fip_app, name="floating-ip", help="Floating IPs (DNAT from an external network).")
    app.add_typer(network.sg_app, name="security-group", help="Security groups, rules and label policies.")
    app.add_typer(network.qos_app, name="qos-policy", help="QoS policies: rate limits and DSCP.")
    app.add_typer(
        lb.app, name="lb", help="Load balancers: listeners, pools, members, health monitors, L7 policies."
    )
    app.add_typer(slo.probe_app, name="probe", help="Synthetic probes run inside tenant networks.")
    app.add_typer(slo.slo_app, name="slo", help="SLOs on probes: budget, burn rate, monthly SLA report.")
    app.add_typer(
        autoscale.app, name="autoscale", help="Autoscaling offline: replay a load trace through a policy."
    )
    app.add_typer(kek.app, name="kek", help="Key-encryption keys: list, rotate (admins).")
    app.add_typer(apikey.app, name="api-key", help="API keys: scoped, expiring tokens for scripts and CI.")
    app.add_typer(webhook.app, name="webhook", help="Webhooks: signed event deliveries to your URLs.")
    app.add_typer(
        scaling.app, name="scaling-group", help="Scaling groups: desired count, members, activities."
    )
    app.add_typer(listings.tenant_app, name="tenant", help="Tenants (platform administrators see all).")
    app.add_typer(listings.project_app, name="project", help="Projects of tenants, with their parent.")
    app.add_typer(listings.user_app, name="user", help="Users with their role and tenant (administrators).")
    app.command(name="events")(misc.events)
    app.command(name="agent")(agent.agent)


def _register_kms() -> None:
    from novacron.cli import kms

    app.add_typer(kms.app, name="kms", help="Your tenant's keys and secrets: encrypt, rotate, shred.")


def _register_config() -> None:
    from novacron.cli import liveconfig, sso

    app.add_typer(sso.app, name="identity-provider", help="Single sign-on: a tenant's identity providers.")
    app.add_typer(liveconfig.app, name="config", help="Live settings: get, set, diff, history, rollback.")
    from novacron.cli import compliance

    app.add_typer(
        compliance.app, name="compliance", help="Compliance checks, evidence reports, GDPR export/erasure."
    )


def _register_completion() -> None:
    from novacron.cli.completion import completion

    app.command(name="completion")(completion)


def _register_roles() -> None:
    from novacron.cli import roles

    app.add_typer(roles.role_app, name="role", help="Roles: built-in and your tenant's custom ones.")
    app.add_typer(roles.assignment_app, name="role-assignment", help="Who holds which role, where.")
    app.add_typer(roles.auth_app, name="auth", help="Authorization: explain a decision.")


_register()
_register_config()
_register_completion()
_register_roles()
_register_kms()

if __name__ == "__main__":  # pragma: no cover
    app()
