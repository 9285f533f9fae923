// The single figures workloads report (as opposed to series over message sizes): how each is
// labelled, its unit, and which way is better. HPCC's come from its summary section.
import { HPCC_FIGURES } from './hpcc.js';

export interface FigureInfo {
  label: string;
  unit: string;
  higherIsBetter: boolean;
}

export const FIGURES: Readonly<Record<string, FigureInfo>> = {
  ...HPCC_FIGURES,
  iperf3_Gbits: { label: 'iperf3 bandwidth', unit: 'Gbit/s', higherIsBetter: true },
  sockperf_tp_MBs: { label: 'sockperf throughput', unit: 'MB/s', higherIsBetter: true },
  sockperf_pp64_select_us: { label: 'sockperf ping-pong p50, 64 B, select', unit: 'µs', higherIsBetter: false },
  sockperf_pp64_poll_us: { label: 'sockperf ping-pong p50, 64 B, poll', unit: 'µs', higherIsBetter: false },
  sockperf_pp64_epoll_us: { label: 'sockperf ping-pong p50, 64 B, epoll', unit: 'µs', higherIsBetter: false },
  connect_p50_us: { label: 'short connection (connect, 64 B round trip, close) p50', unit: 'µs', higherIsBetter: false },
  connect_p99_us: { label: 'short connection p99', unit: 'µs', higherIsBetter: false },
  connect_mean_us: { label: 'short connection mean', unit: 'µs', higherIsBetter: false },
  connect_client_cpu_us: { label: 'short connection: client CPU per connection', unit: 'µs', higherIsBetter: false },
  connect_client_faults: { label: 'short connection: client page faults per connection', unit: 'faults', higherIsBetter: false },
  connect_client_switches: { label: 'short connection: client context switches per connection', unit: 'switches', higherIsBetter: false },
  kcalls_rt: { label: 'kernel calls per round trip, both ranks', unit: 'calls', higherIsBetter: false },
};
