// QEMU user networking's `guestfwd=…-cmd:` runs this once per guest connection: it joins the
// guest's TCP stream (stdin/stdout) to 127.0.0.1:PORT on the host. (`guestfwd=…-tcp:HOST:PORT`
// would open one single connection at QEMU start-up and serve only the first guest connection.)
//   node relay.mjs PORT
import { connect } from 'node:net';

const port = Number(process.argv[2]);
const socket = connect({ host: '127.0.0.1', port });
socket.on('error', () => process.exit(1));
socket.on('connect', () => {
  process.stdin.pipe(socket);
  socket.pipe(process.stdout);
});
socket.on('end', () => process.stdout.end(() => process.exit(0)));
process.stdin.on('end', () => socket.end());
process.stdout.on('error', () => process.exit(0));
