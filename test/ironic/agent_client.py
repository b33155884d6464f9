#!/usr/bin/python3
"""Drive a running bootc-agent with Ironic's own conductor-side client.

Uses ``ironic.drivers.modules.agent_client.AgentClient`` exactly as the
conductor does, set up standalone (no config files, no database): a
``objects.Node`` whose ``driver_internal_info`` holds ``agent_url``,
``agent_secret_token`` and ``agent_verify_ca`` (a path to the agent's
certificate, the way the conductor stores the PEM it got in a heartbeat).

Usage: agent_client.py SPEC.json|-  -- prints one JSON object on stdout.
The spec may hold a registry pull secret: pass it on stdin ("-"), so it
never sits in a file or on a command line where the tenant image could see
it.
Run it with Debian's /usr/bin/python3 (python3-ironic); logs go to stderr.

SPEC keys: agent_url, token, ca_file, node_uuid, mac, slow_step,
hardware_manager_version; with only_bootc: true and bootc: {args,
instance_info, timeout} it runs one bootc deploy instead of the command
tour.
"""
import base64
import io
import json
import logging
import sys
import tarfile
import time
import traceback


def err(exc):
    return {'error': type(exc).__name__, 'message': str(exc)}


def main(spec_path):
    if spec_path == '-':
        spec = json.load(sys.stdin)
    else:
        with open(spec_path) as f:
            spec = json.load(f)

    from ironic.conf import CONF
    CONF([], project='ironic', default_config_files=[])
    # Keep retries short: a failure should show up in seconds, not minutes.
    CONF.set_override('command_wait_interval', 1, group='agent')
    from ironic import objects
    objects.register_all()
    from ironic.common import context
    from ironic.common import exception
    from ironic.drivers.modules import agent_client

    ctx = context.get_admin_context()
    dii = {
        'agent_url': spec['agent_url'],
        'agent_secret_token': spec['token'],
        'agent_verify_ca': spec['ca_file'],
        'hardware_manager_version': spec['hardware_manager_version'],
    }
    node = objects.Node(
        ctx, uuid=spec['node_uuid'], driver='fake-hardware', driver_info={},
        instance_info=dict((spec.get('bootc') or {}).get('instance_info', {})),
        driver_internal_info=dii, properties={'cpu_arch': 'x86_64'}, extra={})
    port = objects.Port(
        ctx, uuid='7c5bd1f4-8a7f-4a43-9f1e-2b1f3a4c5d6e', node_id=1,
        address=spec['mac'], pxe_enabled=True, local_link_connection={})
    client = agent_client.AgentClient()
    out = {'ironic_version': None}
    try:
        import pbr.version
        out['ironic_version'] = pbr.version.VersionInfo('ironic').version_string()
    except Exception:  # noqa: BLE001 -- informational only
        pass

    # Ironic 21.4 lists commands without ?agent_token= (added in later
    # releases); an agent that, like IPA >= 12, requires the token on GET
    # refuses it. Record what happens, then send the token the way newer
    # conductors do.
    try:
        client.get_commands_status(node, retry_connection=False)
        out['unpatched_get_commands_status'] = {'ok': True}
    except Exception as e:  # noqa: BLE001
        out['unpatched_get_commands_status'] = err(e)

    plain_get = client.session.get

    def get_with_token(url, **kwargs):
        params = dict(kwargs.pop('params', None) or {})
        params.setdefault('agent_token', spec['token'])
        return plain_get(url, params=params, **kwargs)

    client.session.get = get_with_token

    def last(method, timeout=30.0):
        """Poll like the conductor: the last command of that name."""
        deadline = time.monotonic() + timeout
        seen_progress = []
        while True:
            status = client.get_last_command_status(node, method)
            if status is None:
                raise RuntimeError('command %s not in the list' % method)
            if status['command_status'] != 'RUNNING':
                status['_progress_seen'] = seen_progress
                return status
            progress = (status.get('command_result') or {}).get('progress')
            if progress and progress not in seen_progress:
                seen_progress.append(progress)
            if time.monotonic() > deadline:
                raise RuntimeError('command %s still RUNNING after %ss'
                                   % (method, timeout))
            time.sleep(0.2)

    if spec.get('only_bootc'):
        return bootc_deploy(client, node, port, spec, last, out)

    out['get_deploy_steps'] = client.get_deploy_steps(node, [port])
    out['get_clean_steps'] = client.get_clean_steps(node, [port])

    step = {'interface': 'deploy', 'step': spec['slow_step'],
            'args': {'duration_ms': 1500}, 'priority': 0}
    out['execute_deploy_step'] = client.execute_deploy_step(step, node, [port])
    try:
        client.get_deploy_steps(node, [port])
        out['busy'] = {'ok': True}
    except exception.AgentInProgress as e:
        out['busy'] = err(e)
    except Exception as e:  # noqa: BLE001
        out['busy'] = err(e)
    out['execute_deploy_step_final'] = last('deploy.execute_deploy_step')

    out['sync'] = client.sync(node)

    logs = client.collect_system_logs(node)
    archive = base64.b64decode(logs['command_result']['system_logs'])
    with tarfile.open(fileobj=io.BytesIO(archive), mode='r:gz') as tar:
        names = sorted(m.name.lstrip('./') for m in tar.getmembers()
                       if m.isfile())
        leaked = []
        for m in tar.getmembers():
            if m.isfile():
                data = tar.extractfile(m).read()
                if spec['token'].encode() in data:
                    leaked.append(m.name)
    out['collect_system_logs'] = {
        'command_status': logs['command_status'],
        'bytes': len(archive), 'files': names, 'token_leaked_in': leaked}

    out['power_off'] = client.power_off(node)
    out['power_off_final'] = last('standby.power_off')
    out['commands'] = [
        [c['command_name'], c['command_status']]
        for c in client.get_commands_status(node)]
    return out


def bootc_deploy(client, node, port, spec, last, out):
    """What BootcAgentDeploy.execute_bootc_install (Ironic >= 29) posts."""
    bootc = spec['bootc']
    out['get_deploy_steps'] = client.get_deploy_steps(node, [port])
    # The step exactly as the conductor builds it: no priority key.
    step = {'interface': 'deploy', 'step': 'execute_bootc_install',
            'args': bootc['args']}
    started = time.monotonic()
    out['bootc_started'] = client.execute_deploy_step(step, node, [port])
    out['bootc_final'] = last('deploy.execute_deploy_step',
                              timeout=bootc.get('timeout', 600))
    out['bootc_seconds'] = round(time.monotonic() - started, 1)
    out['get_partition_uuids'] = client.get_partition_uuids(node)
    return out


if __name__ == '__main__':
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        result = main(sys.argv[1])
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        result = {'fatal': err(e)}
    json.dump(result, sys.stdout, default=str)
    sys.stdout.write('\n')
