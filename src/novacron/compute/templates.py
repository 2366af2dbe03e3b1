"""Templates: images marked as the read-only base of linked clones, and VMs turned into one.

A template is an ordinary image row with ``template`` set. Every VM disk is already a qcow2 overlay
on its image (``virt/images.prepare_disk``), so a VM created from a template *is* a linked clone: a
file of a few hundred KiB that reads everything it has not written from the template's disk. What
the flag adds is the promise that this base stays as it is while clones use it:

- its kernel, initrd, command line and hardware can no longer change (an image's disk never does);
- it is neither deleted nor unmarked while VMs use it: a 409 names them (``users`` in the answer).

Turning a stopped VM into a template does what Proxmox's "Convert to template" does: the VM is
consumed. Its disk is flattened into a new image of its project (kernel and initrd carried over,
counted by the ``snapshots`` quota like a snapshot, ``snapshot_of`` naming the VM it came from),
then the VM is destroyed and its row, ports and quota go. Keeping a VM whose disk was frozen would
leave a VM that cannot change; a user who wants the VM kept takes a snapshot instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import select

from novacron import events
from novacron.agent.protocol import Destroy
from novacron.compute import hostops
from novacron.compute import tasks as vm_tasks
from novacron.compute.vms import ensure_idle, new_derived_image
from novacron.db.models import VM, Image, Project, Task
from novacron.errors import Conflict, on_field
from novacron.quota import enforce as quota
from novacron.tasks.runner import create_task

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context
    from novacron.identity.principal import Principal

#: at most this many names in a refusal's text (all of them in its ``users`` member)
SHOWN_USERS = 10


def users_of(session: Session, image_id: str) -> list[str]:
    """The names of the VMs whose disks read from the image, by name."""
    return list(session.scalars(select(VM.name).where(VM.image_id == image_id).order_by(VM.name)))


def in_use(image: Image, users: list[str], doing: str) -> Conflict:
    """The 409 of an image that VMs use: it names them (all in ``users``, the first in the text)."""
    shown = ", ".join(users[:SHOWN_USERS]) + (
        f" and {len(users) - SHOWN_USERS} more" if len(users) > SHOWN_USERS else ""
    )
    kind = "Template" if image.template else "Image"
    return Conflict(
        f"Cannot {doing} {kind.lower()} '{image.name}': {len(users)} VM(s) use it as their base disk "
        f"({shown}); delete them first.",
        extra={"users": users},
    )


def check_unused(session: Session, image: Image, doing: str) -> None:
    """Refuse (409 naming the VMs) to ``doing`` an image a VM's disk reads from."""
    users = users_of(session, image.id)
    if users:
        raise in_use(image, users, doing)


def check_mutable(image: Image, field: str, part: str = "body") -> None:
    """A template's boot settings are part of the base its clones share: refuse (409) to change them."""
    if image.template:
        raise on_field(
            Conflict,
            field,
            f"image '{image.name}' is a template: its kernel, initrd, command line and hardware are "
            f"fixed (unmark it first: POST /v1/images/{image.id}/template with template false)",
            part=part,
            title=Conflict.title,
        )


def mark(session: Session, image: Image, template: bool) -> Image:
    """Mark an active image as a template, or unmark one no VM uses."""
    if template == image.template:
        return image
    if template and image.status != "active":
        raise Conflict(f"Image '{image.name}' is {image.status}; only an active image becomes a template.")
    if not template:
        check_unused(session, image, "unmark")
    image.template = template
    session.flush()
    events.publish(
        session,
        "image.template" if template else "image.untemplated",
        "image",
        image.id,
        tenant_id=image.tenant_id,
        project_id=image.project_id,
        name=image.name,
    )
    return image


def request_template(session: Session, principal: Principal, vm: VM, image_name: str) -> tuple[Image, Task]:
    """Turn the stopped ``vm`` into the template ``image_name``; the VM is consumed by the task."""
    ensure_idle(vm)
    if vm.state != "stopped" or vm.host_id is None:
        raise Conflict(f"Stop VM '{vm.name}' before turning it into a template (it is {vm.state}).")
    image = new_derived_image(session, vm.tenant_id, vm.project_id, image_name, snapshot_of=vm.id)
    image.template = True
    project = session.get(Project, vm.project_id)
    assert project is not None
    quota.charge(session, principal, project, "snapshot", image.id, {"snapshots": 1})
    vm.task_state = "templating"
    session.flush()
    task = create_task(
        session,
        TemplateVM,
        "vm",
        vm.id,
        tenant_id=vm.tenant_id,
        project_id=vm.project_id,
        params={"image_id": image.id},
    )
    return image, task


class TemplateVM(vm_tasks.SnapshotVM):
    """Flatten a stopped VM's disk into a template image, then remove the VM (Proxmox's convert)."""

    kind = "vm.template"
    steps: ClassVar[list[str]] = ["copy_disk", "activate", "destroy", "forget"]

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        if step in ("copy_disk", "activate"):
            await super().run_step(ctx, task, step)
            return
        with ctx.db.session() as s:
            vm = s.get(VM, task.resource_id)
            if vm is None:
                return
            if step == "forget":
                vm_tasks.forget_vm(ctx, s, vm)
                return
        if vm.host_id is not None:
            await hostops.call(ctx, vm.host_id, task, Destroy(), vm.id, timeout_s=120)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        """Before the template is whole, nothing is left of it; after, it stays and the VM too."""
        image_id = task.params["image_id"]
        with ctx.db.session() as s:
            image = s.get(Image, image_id)
            made = image is not None and image.status == "active"
        if not made:
            await super().rollback(ctx, task, error)
            return
        vm_tasks.end_operation(ctx, task.resource_id, None, f"the template was made, but: {error}")
